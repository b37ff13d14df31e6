"""Who is asking: credentials, CSRF and Origin checks, trusted hosts.

A request names its user with `Authorization: Bearer <API token>` (CLI, scripts) or the
`myspinbot_session` cookie (the web UI, after POST /api/session). A cookie is sent by the
browser on its own, so a cookie-authenticated request that changes something must also
carry `X-MySpinBot-CSRF: 1` (a header a cross-site form or a simple cross-site fetch cannot
set) and, when it has an `Origin`, come from this very origin. A WebSocket handshake
carries the cookie too and cannot carry custom headers, so /ws checks its Origin.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ApiError
from gateway.middleware import _json
from myspinbot.accounts import Accounts, User

SESSION_COOKIE = "myspinbot_session"
CSRF_HEADER = "X-MySpinBot-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGN_IN = (
    "Sign in: send `Authorization: Bearer <token>` (the CLI reads MYSPINBOT_TOKEN or "
    "<data dir>/secrets/owner.token; `myspinbot tokens create` makes one), or open the "
    "login link `myspinbot up` printed."
)

# Declared as FastAPI security schemes so the OpenAPI document (and /docs) shows them.
_bearer = HTTPBearer(auto_error=False, description="An API token (`msb_...`).")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="The web UI's session cookie."
)


def accounts_of(conn: HTTPConnection) -> Accounts:
    accounts: Accounts = conn.app.state.services.accounts
    return accounts


async def _identify(conn: HTTPConnection, bearer: str | None, cookie: str | None) -> User | None:
    accounts = accounts_of(conn)
    try:
        if bearer is not None:
            conn.state.auth_via = "bearer"
            return await anyio.to_thread.run_sync(accounts.verify_token, bearer)
        if cookie:
            conn.state.auth_via = "cookie"
            return await anyio.to_thread.run_sync(accounts.session_user, cookie)
    except DBAPIError as exc:  # the accounts live in SQL: an outage is a 503, not a 500
        raise ApiError(
            503, f"The account database is not answering ({type(exc).__name__}); try again"
        ) from None
    return None


async def authenticate(request: Request) -> User:
    """The signed-in user, or ApiError 401 (403 for a cookie request that fails the CSRF
    check). Done once per request: the result is kept on request.state."""
    cached: User | None = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization")
    bearer = None
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "The Authorization header must be `Bearer <token>`. " + SIGN_IN)
        bearer = value.strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    user = await _identify(request, bearer, cookie)
    if user is None:
        if bearer is not None or cookie:
            raise ApiError(
                401, "This token or session is not valid (revoked or expired). " + SIGN_IN
            )
        raise ApiError(401, SIGN_IN)
    if request.state.auth_via == "cookie" and request.method not in SAFE_METHODS:
        check_csrf(request)
    request.state.user = user
    return user


async def require_user(
    request: Request,
    # Declared for the OpenAPI document (security schemes); `authenticate` reads both.
    _bearer_scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _cookie_scheme: Annotated[str | None, Depends(_cookie)],
) -> User:
    return await authenticate(request)


OPEN_API_ROUTES = frozenset({("POST", "/api/session")})  # signing in is how one gets a user


class AuthMiddleware:
    """Authenticates every /api request before the route reads its body: a stranger's
    upload is refused at its headers, and no validation error tells a stranger anything.
    (The routes' `require_user` dependency then finds the user on request.state.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and (path == "/api" or path.startswith("/api/"))
            and (scope["method"], path.rstrip("/")) not in OPEN_API_ROUTES
        ):
            try:
                await authenticate(Request(scope))
            except ApiError as exc:
                await _json(send, exc.status, {"error": exc.message})
                return
        await self.app(scope, receive, send)


async def optional_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> User | None:
    """The user when the request carries a valid credential, else None (never an error)."""
    try:
        return await _identify(request, bearer.credentials if bearer else None, cookie)
    except ApiError:
        return None


def is_admin(user: User) -> bool:
    return user.role == "admin"


async def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    if not is_admin(user):
        raise ApiError(403, "Only an admin may do this.")
    return user


CurrentUser = Annotated[User, Depends(require_user)]
AdminUser = Annotated[User, Depends(require_admin)]


# --- CSRF and Origin ---------------------------------------------------------------------------
def same_origin(headers: Headers) -> bool:
    """No Origin header (not a browser's cross-origin request), or this very origin.

    Compared by host and port (the Host header): behind a TLS-terminating proxy the
    gateway sees http while the browser's Origin says https."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin == "null" or "://" not in origin:
        return False
    netloc = origin.split("://", 1)[1].rstrip("/").lower()
    host = (headers.get("host") or "").lower()
    return bool(host) and _strip_default_port(netloc) == _strip_default_port(host)


def _strip_default_port(netloc: str) -> str:
    for port in (":80", ":443"):
        if netloc.endswith(port):
            return netloc[: -len(port)]
    return netloc


def check_csrf(request: Request) -> None:
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(
            403,
            f"A request signed in with the session cookie that changes something must send "
            f"the header `{CSRF_HEADER}: 1` (cross-site request defence).",
        )
    if not same_origin(request.headers):
        raise ApiError(403, "Requests from another site (Origin) are refused.")


async def websocket_user(websocket: WebSocket) -> tuple[int, str] | User:
    """The user of a /ws handshake, or the (status, message) to refuse it with."""
    if not same_origin(websocket.headers):
        return 403, "WebSocket connections from another site (Origin) are refused."
    header = websocket.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    if header and bearer is None:
        return 401, "The Authorization header must be `Bearer <token>`. " + SIGN_IN
    cookie = websocket.cookies.get(SESSION_COOKIE)
    try:
        user = await _identify(websocket, bearer, cookie)
    except ApiError as exc:
        return exc.status, exc.message
    if user is None:
        if bearer is not None or cookie:
            return 401, "This token or session is not valid (revoked or expired). " + SIGN_IN
        return 401, SIGN_IN
    websocket.state.user = user
    return user


# --- machine credentials -----------------------------------------------------------------------
def bearer_matches(headers: Headers, secret: str | None) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time; never true without one."""
    if not secret:
        return False
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), secret)


# --- trusted hosts -----------------------------------------------------------------------------
class TrustedHostMiddleware:
    """Answers only to known host names (a DNS-rebinding page names its own domain in Host).

    IP literals are always allowed: DNS rebinding needs a name, and a server bound to
    0.0.0.0 is reached by whatever addresses the machine has."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {h.strip("[]") for h in allowed}

    def allows(self, host_header: str) -> bool:
        if self.any:
            return True
        host = host_header.lower()
        if host.startswith("["):  # [v6]:port
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        if host in self.allowed:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        message = (
            f"Host {host!r} is not served here; add it to MYSPINBOT_ALLOWED_HOSTS "
            "(comma-separated) if it is yours."
        )
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return
        await _json(send, 400, {"error": message})
