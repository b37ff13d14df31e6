"""The web UI: plain ES modules and one stylesheet, served on the API's own origin.

`GET /` is the page; its assets are under `/ui/`. There is no build step: the files
in gateway/static are what the browser gets. Every response says `Cache-Control:
no-cache`, so a browser revalidates (cheaply, by ETag) and never runs a stale
module against a newer gateway.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

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


class UiFiles(StaticFiles):
    """StaticFiles with fixed content types and revalidate-every-time caching."""

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
        return response


def mount_ui(app: FastAPI) -> None:
    """Serve the page at `/` and its assets under `/ui/`."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            INDEX, media_type=MEDIA_TYPES[".html"], headers={"cache-control": NO_CACHE}
        )

    app.mount(ASSETS_PATH, UiFiles(directory=STATIC_DIR / "ui"), name="ui")
