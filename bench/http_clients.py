"""Job submitters for the benchmark: `POST /api/generate` -> job id.

Two clients, because the client shares the 2 CPUs with the platform:

- `raw`: keep-alive HTTP/1.1 over asyncio streams, a few hundred microseconds of
  CPU per request; the default, so the numbers are about the platform.
- `httpx`: `httpx.AsyncClient`. Measured here it costs several ms of CPU per
  request, growing with the number of pooled connections (httpcore checks every
  connection of the pool on each request), so at 32 concurrent requests it is
  the bottleneck of the benchmark itself (see README).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

SUBMIT_PATH = "/api/generate"
TIMEOUT_S = 60.0


class Submitter(Protocol):
    async def submit(self, body: dict[str, Any]) -> str: ...

    async def aclose(self) -> None: ...


def _job_id(status: int, payload: bytes) -> str:
    if status != 202:
        raise RuntimeError(f"submit failed: {status} {payload[:300]!r}")
    return str(json.loads(payload)["jobId"])


class HttpxSubmitter:
    def __init__(self, base_url: str, connections: int, token: str | None = None) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=TIMEOUT_S, headers=headers
        )

    async def submit(self, body: dict[str, Any]) -> str:
        resp = await self._client.post(SUBMIT_PATH, json=body)
        return _job_id(resp.status_code, resp.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class RawConnection:
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self._writer.write(head + body)
        status = int((await self._reader.readline()).split()[1])
        length = None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("response without Content-Length")
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


class RawSubmitter:
    """Keep-alive connections, one per concurrent request, opened on demand."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self._auth = f"Authorization: Bearer {token}\r\n" if token else ""
        url = urlsplit(base_url)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        self._idle: list[RawConnection] = []
        self._all: list[RawConnection] = []

    def _head(self, length: int) -> bytes:
        return (
            f"POST {SUBMIT_PATH} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        ).encode()

    async def _connection(self) -> RawConnection:
        if self._idle:
            return self._idle.pop()
        conn = await RawConnection.open(self._host, self._port)
        self._all.append(conn)
        return conn

    async def submit(self, body: dict[str, Any]) -> str:
        data = json.dumps(body).encode()
        conn = await self._connection()
        status, payload = await asyncio.wait_for(conn.post(self._head(len(data)), data), TIMEOUT_S)
        self._idle.append(conn)  # only after a complete response: the connection is reusable
        return _job_id(status, payload)

    async def aclose(self) -> None:
        for conn in self._all:
            conn.close()


CLIENTS = ("raw", "httpx")


def make_submitter(
    kind: str, base_url: str, connections: int, token: str | None = None
) -> Submitter:
    """`token`: the API token sent as `Authorization: Bearer` (the gateway requires one)."""
    if kind == "raw":
        return RawSubmitter(base_url, token)
    if kind == "httpx":
        return HttpxSubmitter(base_url, connections, token)
    raise ValueError(f"unknown HTTP client {kind!r}; choose from {CLIENTS}")
