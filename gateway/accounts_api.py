"""Sign-in and account routes: /api/session, /api/me, /api/users, /api/tokens.

Thin: each handler checks who asks and calls the accounts service (myspinbot.accounts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import (
    SESSION_COOKIE,
    AdminUser,
    CurrentUser,
    accounts_of,
    is_admin,
    same_origin,
)
from gateway.errors import ApiError
from myspinbot.accounts import AccountError, Accounts, TokenInfo, User

router = APIRouter(prefix="/api", tags=["accounts"])
T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class SignIn(_Body):
    token: str = Field(
        min_length=1, max_length=200, description="An API token or a one-time login token."
    )


class NewUser(_Body):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "member"] = "member"


class NewToken(_Body):
    name: str = Field("api", min_length=1, max_length=100)
    expires_in_days: float | None = Field(
        None, alias="expiresInDays", gt=0, le=3650, description="Unset: never expires."
    )
    user: str | None = Field(
        None, max_length=64, description="Admins only: the user (name or id) it is for."
    )


class UserView(BaseModel):
    id: str
    name: str
    role: Literal["admin", "member"]


class NewUserView(UserView):
    token: str = Field(description="The new user's first API token; shown only this once.")


class TokenView(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    name: str
    user_id: str = Field(alias="userId")
    user_name: str = Field(alias="userName")
    created_at: float = Field(alias="createdAt")
    expires_at: float | None = Field(alias="expiresAt")
    revoked_at: float | None = Field(alias="revokedAt")
    active: bool


class NewTokenView(TokenView):
    token: str = Field(description="The token itself; shown only this once.")


def _user_view(user: User) -> UserView:
    return UserView(id=user.id, name=user.name, role=user.role)


def _token_view(info: TokenInfo) -> TokenView:
    return TokenView(
        id=info.id,
        name=info.name,
        user_id=info.user_id,
        user_name=info.user_name,
        created_at=info.created_at,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
        active=info.active(time.time()),
    )


async def _run(request: Request, fn: Callable[[Accounts], T]) -> T:
    """Call the accounts service in a worker thread; its refusals become JSON errors."""
    accounts = accounts_of(request)
    try:
        return await anyio.to_thread.run_sync(fn, accounts)
    except AccountError as exc:
        raise ApiError(exc.status, exc.message) from None


# --- sessions ----------------------------------------------------------------------------------
@router.post("/session", summary="Sign in: exchange a token for a session cookie")
async def sign_in(body: SignIn, request: Request, response: Response) -> UserView:
    # Login CSRF: a foreign page must not sign the browser into the attacker's account.
    if not same_origin(request.headers):
        raise ApiError(403, "Signing in from another site (Origin) is refused.")
    ttl = request.app.state.services.settings.session_ttl_s
    session = await _run(request, lambda a: a.start_session(body.token, ttl))
    if session is None:
        raise ApiError(
            401,
            "This token is not valid: it is unknown, revoked or expired, or a one-time "
            "login link that was already used. Run `myspinbot up` again for a new link, "
            "or `myspinbot tokens create` for a token.",
        )
    response.set_cookie(
        SESSION_COOKIE,
        session.secret,
        max_age=int(ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_over_https(request),
    )
    return _user_view(session.user)


def _over_https(request: Request) -> bool:
    # Behind a TLS-terminating proxy (Traefik) the gateway itself is reached over http.
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return request.url.scheme == "https" or forwarded == "https"


@router.delete("/session", status_code=204, summary="Sign out: end this session")
async def sign_out(user: CurrentUser, request: Request) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await _run(request, lambda a: a.end_session(secret))
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_over_https(request)
    )
    return response


@router.get("/me", summary="Who is signed in")
async def me(user: CurrentUser) -> UserView:
    return _user_view(user)


# --- users (admins) ------------------------------------------------------------------------------
@router.get("/users", summary="All users (admins only)")
async def list_users(_: AdminUser, request: Request) -> dict[str, list[UserView]]:
    users = await _run(request, lambda a: a.list_users())
    return {"users": [_user_view(u) for u in users]}


@router.post("/users", status_code=201, summary="Add a user with a first API token (admins only)")
async def add_user(body: NewUser, _: AdminUser, request: Request) -> NewUserView:
    def add(a: Accounts) -> tuple[User, str]:
        user = a.add_user(body.name, body.role)
        return user, a.create_token(user, "first token").token

    user, token = await _run(request, add)
    return NewUserView(id=user.id, name=user.name, role=user.role, token=token)


@router.delete("/users/{user}", status_code=204, summary="Remove a user (admins only)")
async def remove_user(user: str, admin: AdminUser, request: Request) -> Response:
    def remove(a: Accounts) -> bool:
        found = a.find_user(user)
        return found is not None and a.remove_user(found.id)

    if not await _run(request, remove):
        raise ApiError(404, f"No user named {user!r}.")
    return Response(status_code=204)


# --- API tokens ----------------------------------------------------------------------------------
@router.get("/tokens", summary="Your API tokens (admins: everyone's with ?all=true)")
async def list_tokens(
    user: CurrentUser,
    request: Request,
    all_users: Annotated[bool, Query(alias="all")] = False,
) -> dict[str, list[TokenView]]:
    if all_users and not is_admin(user):
        raise ApiError(403, "Only an admin may list everyone's tokens.")
    infos = await _run(request, lambda a: a.list_tokens(None if all_users else user.id))
    return {"tokens": [_token_view(i) for i in infos]}


@router.post("/tokens", status_code=201, summary="Create an API token (shown once)")
async def create_token(body: NewToken, user: CurrentUser, request: Request) -> NewTokenView:
    def create(a: Accounts) -> tuple[TokenInfo, str]:
        owner = user
        if body.user is not None and body.user not in (user.name, user.id):
            if not is_admin(user):
                raise AccountError("Only an admin may create tokens for other users.", 403)
            found = a.find_user(body.user)
            if found is None:
                raise AccountError(f"No user named {body.user!r}.", 404)
            owner = found
        expires = time.time() + body.expires_in_days * 86400 if body.expires_in_days else None
        created = a.create_token(owner, body.name, expires)
        return created.info, created.token

    info, token = await _run(request, create)
    return NewTokenView(**_token_view(info).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token")
async def revoke_token(token_id: str, user: CurrentUser, request: Request) -> Response:
    def revoke(a: Accounts) -> bool:
        info = a.get_token(token_id)
        # Someone else's token is "not found" to a member: its existence is not theirs to know.
        if info is None or (info.user_id != user.id and not is_admin(user)):
            return False
        return a.revoke_token(token_id)

    if not await _run(request, revoke):
        raise ApiError(404, f"No token with id {token_id!r}.")
    return Response(status_code=204)
