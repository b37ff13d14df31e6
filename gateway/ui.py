"""The web UI: plain ES modules and one stylesheet, served on the API's own origin.

`GET /` is the page; its assets are under `/ui/`. There is no build step: the files
in gateway/static are what the browser gets. Every response says `Cache-Control:
no-cache`, so a browser revalidates (cheaply, by ETag) and never runs a stale
module against a newer gateway.

The page and its assets carry a Content-Security-Policy that allows scripts and
styles only from this origin (no inline code at all, so an injected `<script>` or
`onerror=` does not run), network connections only to this origin, and images and
media also from S3, where the download links point. The page is never framed and
sends no Referer: a one-time sign-in link (`/?token=...`) must not leak its token to
S3 or anywhere else before the page has removed it from the address bar.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from myspinbot.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"
ASSETS_PATH = "/ui"
NO_CACHE = "no-cache"

# Set explicitly: `mimetypes` reads the OS tables, and some map .js to text/plain,
# which browsers refuse to run as an ES module.
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


def origin_of(url: str | None) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def content_security_policy(settings: Settings) -> str:
    """The UI's policy. S3 is added to images and media only: the page shows portraits
    and plays videos from their signed links but never fetches from S3 in script."""
    s3 = origin_of(settings.s3_public_endpoint or settings.s3_endpoint)
    extra = f" {s3}" if s3 else ""
    directives = {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        # blob: previews the picked photos, voice clip and portrait before upload;
        # data: is the empty favicon.
        "img-src": f"'self' blob: data:{extra}",
        "media-src": f"'self' blob:{extra}",
        # 'self' covers the WebSocket to this host (ws:/wss:) too.
        "connect-src": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def security_headers(settings: Settings) -> dict[str, str]:
    return {
        "content-security-policy": content_security_policy(settings),
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",  # for browsers that predate frame-ancestors
    }


class UiFiles(StaticFiles):
    """StaticFiles with fixed content types, revalidate-every-time caching and the
    UI's security headers."""

    def __init__(self, *, directory: Path, headers: dict[str, str]) -> None:
        super().__init__(directory=directory)
        self.extra_headers = headers

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = MEDIA_TYPES.get(Path(full_path).suffix.lower())
        if media_type and response.status_code != 304:
            response.headers["content-type"] = media_type
        response.headers["cache-control"] = NO_CACHE
        response.headers.update(self.extra_headers)
        return response


def mount_ui(app: FastAPI, settings: Settings) -> None:
    """Serve the page at `/` and its assets under `/ui/`."""
    headers = security_headers(settings)

    # The page itself is public: it holds no data, and it is what shows the sign-in
    # form. Everything it shows comes from /api/*, which needs a user.
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            INDEX, media_type=MEDIA_TYPES[".html"], headers={"cache-control": NO_CACHE, **headers}
        )

    app.mount(ASSETS_PATH, UiFiles(directory=STATIC_DIR / "ui", headers=headers), name="ui")
