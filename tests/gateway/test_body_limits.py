"""Request bodies are counted as they arrive, chunked ones too: past its route's limit a
request is answered 413 at once, and the gateway process does not grow while a client
keeps sending. Uploads at once are bounded (503 with Retry-After)."""

from __future__ import annotations

import io
import json
import select
import socket
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support import RunningPlatform, wait_for

MB = 1024 * 1024
CHUNK = 64 * 1024
HUNDRED_MB = 100 * MB
# "A few MB": what the gateway may grow by while refusing a 100 MB body.
MAX_GROWTH_BYTES = 5 * MB


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    p = RunningPlatform(
        tmp_path_factory.mktemp("limits"),
        env={
            "MYSPINBOT_MAX_UPLOAD_MB": "1",
            "MYSPINBOT_MAX_IMAGES": "2",
            "MYSPINBOT_MAX_CONCURRENT_UPLOADS": "1",
        },
    ).start()
    yield p
    p.stop()


def gateway_rss(p: RunningPlatform) -> int:
    """Resident memory of the gateway process, in bytes (from /proc)."""
    (gateway,) = [c for c in p.state()["children"] if c["name"] == "gateway"]
    status = Path(f"/proc/{gateway['pid']}/status").read_text()
    (line,) = [ln for ln in status.splitlines() if ln.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


def open_chunked(p: RunningPlatform, path: str, content_type: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{p.port}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
    )
    sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in p.headers.items()) + "\r\n").encode())
    return sock


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def send_until_answered(sock: socket.socket, first: bytes, filler: bytes, total: int) -> int:
    """Send `first`, then `filler` chunks up to `total` bytes of body, stopping as soon as
    the server has answered. Returns the body bytes sent."""
    sent = 0
    for piece in [first] + [filler] * ((total - len(first)) // len(filler)):
        if select.select([sock], [], [], 0)[0]:
            return sent
        try:
            sock.sendall(chunk(piece))
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(piece)
    sock.sendall(b"0\r\n\r\n")
    return sent


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    raw = b""
    while b"\r\n\r\n" not in raw:
        data = sock.recv(65536)
        assert data, f"connection closed before a response: {raw!r}"
        raw += data
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        data = sock.recv(65536)
        assert data, "connection closed in the middle of the response body"
        rest += data
    return int(lines[0].split()[1]), headers, json.loads(rest[:length])


def assert_refused_early(p: RunningPlatform, path: str, ctype: str, first: bytes) -> dict:
    before = gateway_rss(p)
    sock = open_chunked(p, path, ctype)
    try:
        sent = send_until_answered(sock, first, b"x" * CHUNK, HUNDRED_MB)
        status, _, body = read_response(sock)
    finally:
        sock.close()
    grown = gateway_rss(p) - before
    assert status == 413, (status, body)
    assert isinstance(body["error"], str) and "limit" in body["error"], body
    # Answered while the client was still sending, not after reading all of it ...
    assert sent < HUNDRED_MB, sent
    # ... and the body was never gathered in the process.
    assert grown <= MAX_GROWTH_BYTES, f"the gateway grew by {grown / MB:.1f} MB"
    return body


def test_chunked_100mb_body_to_a_json_route_is_refused_without_growth(
    platform: RunningPlatform,
) -> None:
    body = assert_refused_early(
        platform, "/api/generate", "application/json", b'{"mode": "direct", "narration": "'
    )
    assert "64 KB" in body["error"] and "/api/generate" in body["error"], body


def test_chunked_upload_over_the_request_limit_is_refused_without_growth(
    platform: RunningPlatform,
) -> None:
    first = (
        b'--zz\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    body = assert_refused_early(
        platform, "/api/portraits", "multipart/form-data; boundary=zz", first
    )
    # The per-request limit of a one-file upload: the 1 MB file plus room for the form.
    assert "2 MB" in body["error"], body


def test_announced_json_body_over_the_limit_is_refused_before_it_is_read(
    platform: RunningPlatform,
) -> None:
    resp = platform.post(
        "/api/generate",
        content=b"{" + b" " * (70 * 1024) + b"}",
        headers={"Content-Type": "application/json", **platform.headers},
    )
    assert resp.status_code == 413, resp.text
    assert "the limit for /api/generate is 64 KB" in resp.json()["error"], resp.text


def test_a_chunked_json_body_within_the_limit_is_read(platform: RunningPlatform) -> None:
    def parts() -> Iterator[bytes]:  # a generator body: sent chunked, no Content-Length
        yield b'{"mode": "direct", '
        yield b'"narration": "Hello there."}'

    resp = httpx.post(
        platform.url + "/api/generate",
        content=parts(),
        headers={"Content-Type": "application/json", **platform.headers},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text


def test_too_many_uploads_at_once_get_503_with_retry_after(platform: RunningPlatform) -> None:
    # One upload in progress (the limit is 1): headers and a first chunk, then it waits.
    first = open_chunked(platform, "/api/portraits", "multipart/form-data; boundary=zz")
    first.sendall(chunk(b'--zz\r\nContent-Disposition: form-data; name="image"; filename="a.png"'))
    files = {"image": ("b.png", b"not really a png", "image/png")}

    def second() -> httpx.Response | None:
        resp = platform.post("/api/portraits", files=files)
        return resp if resp.status_code == 503 else None

    try:
        resp = wait_for(second, timeout=30, what="a second upload to be refused")
    finally:
        first.close()
    assert int(resp.headers["Retry-After"]) >= 1
    assert "uploads" in resp.json()["error"] and "try again" in resp.json()["error"]
    # Once the first one has gone, the next upload is read (and judged on its content).
    resp = wait_for(
        lambda: (
            r if (r := platform.post("/api/portraits", files=files)).status_code != 503 else None
        ),
        timeout=30,
        what="the upload slot to be free again",
    )
    assert resp.status_code == 415, resp.text


def test_websocket_message_over_the_json_limit_closes_the_connection(
    platform: RunningPlatform,
) -> None:
    with platform.ws() as ws:
        ws.send(json.dumps({"type": "subscribe", "jobId": "x" * (70 * 1024)}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_a_narration_upload_is_stored_as_sent(platform: RunningPlatform) -> None:
    """The recording is checked and stored from the parser's spool, not from a copy."""
    from myspinbot.speech.narration import narration_key
    from tests.functions.test_train_function import store

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.int16(8000 * np.sin(np.arange(16000) / 8)).tobytes())
    resp = platform.post("/api/narrations", files={"audio": ("me.wav", buf.getvalue())})
    assert resp.status_code == 201, resp.text
    assert resp.json()["durationSeconds"] == pytest.approx(1.0, abs=0.05)
    assert store(platform).get_bytes(narration_key(resp.json()["narrationId"])) == buf.getvalue()


def test_a_strangers_upload_takes_no_upload_slot(platform: RunningPlatform) -> None:
    """Refused at its headers (no credential), it never counts against the bound of 1."""
    stranger = socket.create_connection(("127.0.0.1", platform.port), timeout=60)
    try:
        stranger.sendall(
            f"POST /api/portraits HTTP/1.1\r\nHost: 127.0.0.1:{platform.port}\r\n"
            "Content-Type: multipart/form-data; boundary=zz\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + chunk(b"--zz\r\n")
        )
        status, _, body = read_response(stranger)
        assert status == 401, body
        files = {"image": ("b.png", b"not really a png", "image/png")}
        resp = platform.post("/api/portraits", files=files)
        assert resp.status_code == 415, resp.text
    finally:
        stranger.close()
