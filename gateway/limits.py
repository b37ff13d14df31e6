"""Request body limits counted as the bytes arrive, and a bound on uploads at once.

`Content-Length` alone proves nothing: a chunked body has none. So every body is counted
as the server hands it over, and the request is answered 413 the moment it passes its
route's limit; the rest is never read into the process. Upload routes get the upload
limits (per file, checked once parsed, and per request, counted here); every other route,
JSON or none, gets the small MYSPINBOT_MAX_JSON_BYTES.

Plain ASGI, like ObserveMiddleware: it wraps `receive` rather than buffering the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.middleware import _json
from myspinbot.settings import Settings

# Room for a multipart form's boundaries, headers and text fields beside its files.
FORM_OVERHEAD_BYTES = 1024 * 1024
# The routes that take files (POST, multipart), so get the upload limits.
TRAIN_PATH = "/api/train"
SINGLE_FILE_PATHS = ("/api/portraits", "/api/narrations")


def size_text(n: int) -> str:
    """A byte count a person reads at a glance (binary units, as the settings): 64 KB."""
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f}".removesuffix(".0") + " MB"
    return f"{n / 1024:.1f}".removesuffix(".0") + " KB" if n >= 1024 else f"{n} bytes"


@dataclass(frozen=True)
class BodyLimits:
    json_bytes: int
    uploads: dict[str, int]  # POST path -> whole-request limit

    @classmethod
    def from_settings(cls, s: Settings) -> BodyLimits:
        # Train: every photo and the voice clip at the per-file limit, plus the form.
        train = s.max_upload_bytes * (s.max_images + 1) + FORM_OVERHEAD_BYTES
        single = s.max_upload_bytes + FORM_OVERHEAD_BYTES
        return cls(
            json_bytes=s.max_json_bytes,
            uploads={TRAIN_PATH: train, **dict.fromkeys(SINGLE_FILE_PATHS, single)},
        )

    def of(self, method: str, path: str) -> tuple[int, bool]:
        """The body limit of a request, and whether it is an upload."""
        limit = self.uploads.get(path) if method == "POST" else None
        return (limit, True) if limit is not None else (self.json_bytes, False)


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes its limit. An HTTPException, so a
    handler that lets it through answers 413 itself; whatever a handler answers instead
    (a parser wrapping it in a 400), the middleware replaces with its 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, limits: BodyLimits, max_uploads: int, retry_after_s: int
    ) -> None:
        self.app = app
        self.limits = limits
        self.max_uploads = max_uploads
        self.retry_after_s = retry_after_s
        self.uploads_now = 0  # one event loop per process: a plain counter is exact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        limit, upload = self.limits.of(method, path)
        length = _content_length(scope)
        if length is not None and length > limit:
            # Announced too large: refused before a byte of the body is read.
            error = f"Request is {size_text(length)}; the limit for {path} is {size_text(limit)}"
            await _json(send, 413, {"error": error, "limitBytes": limit})
            return
        if not upload:
            await self._counted(scope, receive, send, limit)
            return
        if self.uploads_now >= self.max_uploads:
            # Each upload is spooled to disk up to its limit: bound how many at once.
            error = (
                f"The server is receiving {self.uploads_now} uploads already, its limit; "
                f"try again in {self.retry_after_s} s."
            )
            headers = [(b"retry-after", str(self.retry_after_s).encode())]
            await _json(send, 503, {"error": error}, headers)
            return
        self.uploads_now += 1
        try:
            await self._counted(scope, receive, send, limit)
        finally:
            self.uploads_now -= 1

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        over = False
        responded = False
        error = (
            f"The request body passed the {size_text(limit)} limit for "
            f"{scope['method']} {scope['path']}; send a smaller one."
        )

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge(error)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge(error)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            if over and not responded:
                return  # the handler's answer to a body it could not read: ours goes instead
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over or responded:
                raise
        if over and not responded:
            await _json(send, 413, {"error": error, "limitBytes": limit})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None
