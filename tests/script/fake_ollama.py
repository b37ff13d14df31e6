"""FakeOllama: a local HTTP server that speaks Ollama's /api/generate protocol, standing in
for an LLM, which cannot run here.

It answers each POST /api/generate with the next scripted reply (the model's `response`
text, or an HTTP error with Ollama's {"error": ...} body), lists `models` on GET
/api/tags, and records every request body so tests can check what was asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class HttpError:
    status: int
    error: str


Reply = str | HttpError


@dataclass
class FakeOllama:
    replies: list[Reply] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["llama3.1:8b"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def next_reply(self) -> Reply:
        if not self.replies:
            return HttpError(500, "the fake Ollama server has no scripted reply left")
        return self.replies.pop(0)


def _handler(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/api/tags":
                models = [{"name": m, "model": m} for m in fake.models]
                self._send(200, {"models": models})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            if self.path != "/api/generate":
                self._send(404, {"error": "not found"})
                return
            fake.requests.append(body)
            reply = fake.next_reply()
            if isinstance(reply, HttpError):
                self._send(reply.status, {"error": reply.error})
                return
            self._send(
                200,
                {
                    "model": body.get("model"),
                    "created_at": "2025-01-01T00:00:00Z",
                    "response": reply,
                    "done": True,
                    "done_reason": "stop",
                },
            )

    return Handler


@contextmanager
def running(fake: FakeOllama) -> Iterator[FakeOllama]:
    # Port 0: the OS picks a free port at bind time, so no other process can race us to it.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for the loop to notice, once per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
