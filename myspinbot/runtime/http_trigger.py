"""The `http` trigger: an ASGI server that maps requests to Nuclio events.

The mapping follows what a handler sees under Nuclio's processor and Python
wrapper, so a handler cannot tell the two apart: the body is bytes, decoded to a
dict only when the content type is exactly `application/json` (the SDK's
deserializer compares the whole header: `application/json; charset=utf-8` stays
bytes); query parameters are `event.fields`; the timestamp is a naive UTC
datetime in whole seconds (the processor sends Unix seconds); `event.url` is
empty; worker ids are strings. The handler's return value becomes the response
through `nuclio_sdk.Response.from_entrypoint_output`; an exception becomes a 500
`text/plain` "Exception caught in handler - ..." as the wrapper answers, without
the traceback it appends (that goes to the log).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import nuclio_sdk
import uvicorn

from myspinbot import metrics

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket several replicas can share (the kernel spreads connections)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class HttpTriggerApp:
    def __init__(
        self, *, function: str, name: str, handler: Callable[[Any, Any], Any], contexts: list[Any]
    ) -> None:
        self.function, self.name, self._handler = function, name, handler
        self._contexts: asyncio.Queue[Any] | None = None
        self._context_list = contexts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        event = self._event(scope, body)
        contexts = self._contexts
        assert contexts is not None
        context = await contexts.get()  # one invocation per worker at a time, as in Nuclio
        labels = (self.function, self.name)
        started = time.perf_counter()
        metrics.FUNCTION_INFLIGHT.labels(*labels).inc()
        try:
            output = await anyio.to_thread.run_sync(self._handler, context, event)
            response = nuclio_sdk.Response.from_entrypoint_output(json.dumps, output)
            outcome = "success"
        except Exception as exc:
            context.logger.error_with(
                "Exception caught in handler", exc=str(exc), traceback=traceback.format_exc()
            )
            response = {
                "body": f'Exception caught in handler - "{exc}"',
                "content_type": "text/plain",
                "headers": {},
                "status_code": 500,
                "body_encoding": "text",
            }
            outcome = "error"
        finally:
            contexts.put_nowait(context)
            metrics.FUNCTION_INFLIGHT.labels(*labels).dec()
            metrics.FUNCTION_DURATION.labels(*labels).observe(time.perf_counter() - started)
        metrics.FUNCTION_INVOCATIONS.labels(*labels, outcome).inc()
        await _send_response(send, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._contexts = asyncio.Queue()
                for c in self._context_list:
                    self._contexts.put_nowait(c)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _event(self, scope: Scope, body: bytes) -> nuclio_sdk.Event:
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("Content-Type", "")
        parsed: Any = body
        if content_type == "application/json" and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body
        query = scope.get("query_string", b"").decode("latin-1")
        return nuclio_sdk.Event(
            body=parsed,
            content_type=content_type,
            trigger=nuclio_sdk.TriggerInfo("http", self.name),
            fields=dict(parse_qsl(query, keep_blank_values=True)),
            headers=headers,
            _id=str(uuid.uuid4()),
            method=scope["method"],
            path=scope["path"],
            size=len(body),
            timestamp=datetime.datetime.fromtimestamp(int(time.time()), datetime.UTC).replace(
                tzinfo=None
            ),
            url="",
        )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_response(send: Send, response: dict[str, Any]) -> None:
    body = response["body"]
    raw = (
        base64.b64decode(body) if response.get("body_encoding") == "base64" else str(body).encode()
    )
    headers = [(b"content-type", str(response["content_type"]).encode())]
    headers += [
        (str(k).lower().encode(), str(v).encode())
        for k, v in (response.get("headers") or {}).items()
        if str(k).lower() != "content-type"
    ]
    await send(
        {"type": "http.response.start", "status": int(response["status_code"]), "headers": headers}
    )
    await send({"type": "http.response.body", "body": raw})


def make_server(app: HttpTriggerApp) -> uvicorn.Server:
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    return uvicorn.Server(config)
