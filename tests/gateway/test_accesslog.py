"""uvicorn's request lines keep the path and lose the query string, where signed links'
signatures, one-time sign-in tokens and WebSocket resume positions would be."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from gateway import accesslog
from myspinbot.netutil import free_port
from myspinbot.settings import Settings
from tests.support import wait_for

SECRET_QUERY = "X-Amz-Signature=0123abcd&token=msb_not-for-logs"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def download(_: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


@pytest.fixture
def server() -> Iterator[tuple[str, Lines]]:
    """A real uvicorn server at log level info (access lines on), started as the
    gateway is: the filter is installed before uvicorn configures logging."""
    accesslog.install()
    app = Starlette(routes=[Route("/download", download), WebSocketRoute("/ws", ws)])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")
    srv = uvicorn.Server(config)
    lines = Lines()
    for name in accesslog.REQUEST_LOGGERS:
        logging.getLogger(name).addHandler(lines)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: srv.started, what="uvicorn to start")
        yield f"127.0.0.1:{port}", lines
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        for name in accesslog.REQUEST_LOGGERS:
            logging.getLogger(name).removeHandler(lines)


def test_request_lines_have_no_query_strings(server: tuple[str, Lines]) -> None:
    address, lines = server
    assert httpx.get(f"http://{address}/download?{SECRET_QUERY}").text == "ok"
    with connect(f"ws://{address}/ws?{SECRET_QUERY}") as conn:
        assert conn.recv(timeout=10) == "hi"
    wait_for(lambda: any("WebSocket /ws" in ln for ln in lines.lines), what="the WebSocket line")
    logged = "\n".join(lines.lines)
    assert '"GET /download HTTP/1.1" 200' in logged, logged
    assert "Signature" not in logged and "msb_" not in logged and "?" not in logged, logged


def test_the_gateway_installs_the_filter() -> None:
    from gateway.app import create_app

    for name in accesslog.REQUEST_LOGGERS:
        for f in [
            f for f in logging.getLogger(name).filters if isinstance(f, accesslog.DropQueryStrings)
        ]:
            logging.getLogger(name).removeFilter(f)
    create_app(Settings(redis_url="redis://127.0.0.1:1"))
    for name in accesslog.REQUEST_LOGGERS:
        assert any(
            isinstance(f, accesslog.DropQueryStrings) for f in logging.getLogger(name).filters
        )


def test_the_compose_proxy_logs_no_request_paths() -> None:
    """Traefik fronts the API and S3 in Compose; its access lines must not carry paths
    (and so neither query strings with signatures nor sign-in tokens)."""
    from tests.infra.support import TRAEFIK_STATIC, load_yaml

    fields = load_yaml(TRAEFIK_STATIC)["accessLog"]["fields"]
    assert fields["names"]["RequestPath"] == "drop" and fields["names"]["RequestLine"] == "drop"
    assert fields["headers"]["defaultMode"] == "drop"  # Referer holds the page's URL
