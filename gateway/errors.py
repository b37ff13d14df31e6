"""Every error leaves the gateway as JSON: {"error": "<sentence>", ...}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.field, self.extra = status, message, field, extra


def _body(message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"error": message}
    if field:
        out["field"] = field
    out.update(extra)
    return out


def describe_validation(errors: list[Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """Turn pydantic's error list into one readable sentence (plus the details)."""
    details = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        details.append({"field": ".".join(loc) or None, "message": e.get("msg", "invalid")})
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = errors[0].get("ctx", {}).get("error", "")
        return 400, f"Request body is not valid JSON{': ' + ctx if ctx else ''}", details
    parts = []
    for d in details:
        msg = d["message"].removeprefix("Value error, ")
        parts.append(f"{d['field']}: {msg}" if d["field"] else msg)
    return 422, "; ".join(parts) or "invalid request", details


# FastAPI's whole message for a JSON body that json.loads raised on with something other
# than a syntax error; the cause (kept as __cause__) says which.
_FASTAPI_UNPARSABLE = "There was an error parsing the body"


def _unparsable_body(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        why = "it is not UTF-8 text"
    elif isinstance(cause, RecursionError):
        why = "it is nested too deeply"
    elif isinstance(cause, ValueError):
        why = "a number in it has too many digits"
    else:
        why = "it could not be parsed"
    return f"Request body is not valid JSON: {why}"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.message, exc.field, **exc.extra), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, details = describe_validation(list(exc.errors()))
        return JSONResponse(_body(message, details=details), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "No such endpoint; see /docs for the API"
        if exc.status_code == 405:
            message = "Method not allowed on this endpoint; see /docs"
        if exc.status_code == 400 and message == _FASTAPI_UNPARSABLE:
            message = _unparsable_body(exc.__cause__)
        return JSONResponse(_body(message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.log.exception(
            "Unhandled error on %s %s", request.method, request.url.path
        )
        return JSONResponse(_body("Internal error; it has been logged"), status_code=500)
