"""The gateway application: `uvicorn gateway.app:create_app --factory`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway import accesslog, accounts_api, errors, openapi, ownership, routes
from gateway.auth import (
    AuthMiddleware,
    TrustedHostMiddleware,
    bearer_matches,
    optional_user,
    websocket_user,
)
from gateway.hub import EVENT_ID
from gateway.limits import BodyLimitMiddleware, BodyLimits
from gateway.middleware import ObserveMiddleware
from gateway.services import Services
from gateway.ui import mount_ui
from myspinbot import __version__
from myspinbot.accounts import User
from myspinbot.settings import Settings, get_settings

log = logging.getLogger("gateway")
HEALTH_TIMEOUT_S = 3.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings)
        app.state.services = services
        await services.hub.start()
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="MySpinBot",
        version=__version__,
        description="Train a talking-avatar profile from photos and a voice clip, then turn a "
        "topic or a script into a narrated video. Jobs report progress over `WS /ws`.",
        lifespan=lifespan,
    )
    app.state.log = log
    accesslog.install()  # however uvicorn was started: no query strings in request lines
    errors.install(app)
    app.include_router(accounts_api.router)
    app.include_router(routes.router)
    _add_middleware(app, settings)
    _add_platform_routes(app, settings)
    openapi.install(app)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # The last added runs first. Body limits inside authentication: a stranger's upload
    # is refused at its headers and never takes an upload slot. Metrics see every answer.
    app.add_middleware(
        BodyLimitMiddleware,
        limits=BodyLimits.from_settings(settings),
        max_uploads=settings.max_concurrent_uploads,
        retry_after_s=settings.upload_retry_after_s,
    )
    app.add_middleware(AuthMiddleware)
    app.add_middleware(ObserveMiddleware)
    # Added last, so it runs first: a request for a foreign host name gets nothing else.
    app.add_middleware(TrustedHostMiddleware, allowed=settings.trusted_hosts)


def _add_platform_routes(app: FastAPI, settings: Settings) -> None:
    mount_ui(app, settings)

    @app.get("/livez", summary="The gateway process answers (for container liveness checks)")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/health",
        summary="Health of the gateway and everything it depends on",
        description='Without a credential only `{"status": "ok"|"degraded"}`; '
        "signed in, the state of every component.",
    )
    async def health(
        request: Request, user: Annotated[User | None, Depends(optional_user)]
    ) -> JSONResponse:
        s: Services = request.app.state.services
        checks: dict[str, Any] = {
            "redis": s.check_redis(),
            "database": s.check_db(),
            "s3": s.check_s3(),
        }
        if s.settings.triton_url:
            checks["triton"] = s.check_triton()
        results = await asyncio.gather(
            *(asyncio.wait_for(c, HEALTH_TIMEOUT_S) for c in checks.values()),
            return_exceptions=True,
        )
        components: dict[str, Any] = {"gateway": {"status": "ok", "version": __version__}}
        for name, res in zip(checks, results, strict=True):
            components[name] = (
                {"status": "ok", **(res or {})}
                if not isinstance(res, BaseException)
                else {"status": "down", "error": str(res) or type(res).__name__}
            )
        functions: dict[str, Any] = {}
        notices: list[str] = []  # e.g. "train: no real base model is configured ..."
        if components["redis"]["status"] == "ok":
            for name, f in (await s.functions()).items():
                functions[name] = {
                    "status": "ok" if f["replicas"] else "down",
                    "replicas": f["replicas"],
                    **({"error": "no live replica"} if not f["replicas"] else {}),
                }
                notices += [
                    f"{c}: {v['note']}" for c, v in f["capabilities"].items() if v.get("note")
                ]
            for name in s.settings.expected_functions:
                functions.setdefault(
                    name, {"status": "down", "replicas": 0, "error": "not registered yet"}
                )
        components["functions"] = functions
        failing = [n for n, c in components.items() if n != "functions" and c["status"] != "ok"]
        failing += [f"function:{n}" for n, f in functions.items() if f["status"] != "ok"]
        body: dict[str, Any] = {
            "status": "ok" if not failing else "degraded",
            "components": components,
        }
        if failing:
            body["failing"] = failing
        if notices:
            body["notices"] = sorted(set(notices))
        if user is None:  # component detail (addresses, versions, errors) is for users
            body = {"status": body["status"]}
        return JSONResponse(body, status_code=503 if failing else 200)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        s: Services = request.app.state.services
        token = s.settings.metrics_token
        if not bearer_matches(request.headers, token.get_secret_value() if token else None):
            return JSONResponse(
                {
                    "error": "Metrics need `Authorization: Bearer <metrics token>` (the "
                    "MYSPINBOT_METRICS_TOKEN; `myspinbot up` keeps it in "
                    "<data dir>/secrets/metrics.token)."
                },
                status_code=401,
            )
        platform = await asyncio.to_thread(generate_latest, s.metrics_registry)
        return Response(generate_latest(REGISTRY) + platform, media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        s: Services = websocket.app.state.services
        who = await websocket_user(websocket)  # sets websocket.state.user
        if not isinstance(who, User):
            await _refuse(websocket, *who)
            return
        job_id = websocket.query_params.get("jobId") or None
        last = websocket.query_params.get("lastEventId") or None
        await s.hub.serve(
            websocket,
            job_id,
            last if last and EVENT_ID.fullmatch(last) else None,
            # Someone else's job is refused like a missing one (gateway/ownership.py).
            may_see=lambda job: ownership.may_see(who, job.owner),
        )


async def _refuse(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a WebSocket handshake with an HTTP status and a JSON error."""
    try:
        await websocket.send_denial_response(JSONResponse({"error": message}, status_code=status))
    except RuntimeError:  # a server without the denial-response extension: a bare 403
        await websocket.close(code=1008, reason=message[:120])
