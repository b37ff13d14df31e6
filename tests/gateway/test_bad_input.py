"""Bad input gets a 4xx JSON error a person can read, and nothing is accepted."""

from __future__ import annotations

import http.client
import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator

import pytest
import redis
from PIL import Image

from myspinbot import keys
from tests.support import RunningPlatform, wait_for
from tests.voice.speakers import SPEAKERS


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    p = RunningPlatform(
        tmp_path_factory.mktemp("gw"),
        env={"MYSPINBOT_MAX_UPLOAD_MB": "1", "MYSPINBOT_MAX_IMAGES": "3"},
    ).start()
    yield p
    p.stop()


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height: what a decompression bomb looks like up front."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def wav(seconds: float = 1.0) -> bytes:
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return buf.getvalue()


def assert_readable(resp: object, status: int, *words: str) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in resp.text  # type: ignore[attr-defined]
    for w in words:
        assert w.lower() in body["error"].lower(), body["error"]
    return body


def job_count(p: RunningPlatform) -> int:
    return int(p.get("/api/jobs").json()["total"])


def test_malformed_json(platform: RunningPlatform) -> None:
    resp = platform.post(
        "/api/generate",
        content=b'{"mode": "direct", narration',
        headers={"content-type": "application/json"},
    )
    assert_readable(resp, 400, "not valid JSON")


@pytest.mark.parametrize("path", ["/api/status/nope", "/api/jobs/nope"])
def test_unknown_job_id(platform: RunningPlatform, path: str) -> None:
    assert_readable(platform.get(path), 404, "nope")


def test_cancel_unknown_job(platform: RunningPlatform) -> None:
    assert_readable(platform.post("/api/jobs/nope/cancel"), 404, "nope")


def test_unknown_profile(platform: RunningPlatform) -> None:
    resp = platform.post(
        "/api/generate", json={"mode": "direct", "narration": "hi", "profileId": "ghost"}
    )
    assert_readable(resp, 404, "ghost")


@pytest.mark.parametrize(
    "body, words",
    [
        ({"mode": "direct", "narration": ""}, ["narration"]),
        ({"mode": "direct"}, ["narration"]),
        ({"mode": "guided"}, ["prompt"]),
        ({"mode": "telepathic", "narration": "x"}, ["mode"]),
        ({"mode": "direct", "narration": "x" * 5001}, ["narration"]),
        ({"mode": "direct", "narration": "x", "naration": "typo"}, ["naration"]),
    ],
)
def test_generate_body_errors(platform: RunningPlatform, body: dict, words: list[str]) -> None:
    assert_readable(platform.post("/api/generate", json=body), 422, *words)


def test_train_without_images(platform: RunningPlatform) -> None:
    resp = platform.post("/api/train", data={"name": "Ada"})
    assert_readable(resp, 400, "at least one photo")


def test_train_non_image_named_jpg(platform: RunningPlatform) -> None:
    files = [("images", ("me.jpg", b"this is not a picture at all", "image/jpeg"))]
    assert_readable(
        platform.post("/api/train", files=files, data={"name": "Ada"}),
        415,
        "me.jpg",
        "not a readable image",
    )


def test_train_file_over_the_size_limit(platform: RunningPlatform) -> None:
    big = png() + b"\0" * (1024 * 1024 + 10)
    files = [("images", ("big.png", big, "image/png"))]
    assert_readable(
        platform.post("/api/train", files=files, data={"name": "Ada"}), 413, "big.png", "limit"
    )


def test_train_too_many_files(platform: RunningPlatform) -> None:
    files = [("images", (f"{i}.png", png(), "image/png")) for i in range(4)]
    assert_readable(
        platform.post("/api/train", files=files, data={"name": "Ada"}), 400, "limit is 3"
    )


def test_train_decompression_bomb(platform: RunningPlatform) -> None:
    files = [("images", ("huge.png", png_header_only(20000, 20000), "image/png"))]
    assert_readable(platform.post("/api/train", files=files, data={"name": "Ada"}), 413, "huge.png")


def test_train_voice_that_is_text(platform: RunningPlatform) -> None:
    files = [
        ("images", ("a.png", png(), "image/png")),
        ("voice", ("voice.wav", b"hello, I am text pretending to be audio", "audio/wav")),
    ]
    assert_readable(
        platform.post("/api/train", files=files, data={"name": "Ada"}), 415, "voice.wav"
    )


def tone_wav(seconds: float = 4.0) -> bytes:
    """A steady hum, loud and voiced, that no one would call speech."""
    import wave

    import numpy as np

    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.mark.parametrize(
    "clip, words",
    [
        (lambda: wav(6.0), ["quiet.wav", "silent"]),
        (lambda: wav(1.0), ["quiet.wav"]),  # silent and short: the first fault is named
        (tone_wav, ["quiet.wav", "no speech could be recognised"]),
    ],
    ids=["silent", "silent-short", "hum"],
)
def test_train_voice_clip_without_speech_is_refused_at_upload(
    platform: RunningPlatform, clip: Callable[[], bytes], words: list[str]
) -> None:
    files = [
        ("images", ("a.png", png(), "image/png")),
        ("voice", ("quiet.wav", clip(), "audio/wav")),
    ]
    resp = platform.post("/api/train", files=files, data={"name": "Ada"})
    assert_readable(resp, 422, "voice clip", *words)


@pytest.mark.parametrize(
    "options, status, words",
    [
        ("{not json", 400, ["options", "JSON"]),
        ('["a"]', 400, ["JSON object"]),
        ('{"stepz": 10}', 422, ["stepz"]),
        ('{"rank": 0}', 422, ["rank"]),
        ('{"steps": 999999}', 422, ["steps"]),
    ],
)
def test_train_bad_options(
    platform: RunningPlatform, options: str, status: int, words: list[str]
) -> None:
    files = [("images", ("a.png", png(), "image/png"))]
    resp = platform.post("/api/train", files=files, data={"name": "Ada", "options": options})
    assert_readable(resp, status, *words)


def test_whole_request_over_the_limit_is_refused_up_front(platform: RunningPlatform) -> None:
    """Only the headers are sent, never the 6 MB body they announce: a 413 that arrives
    anyway was decided before reading the body. (A gateway that read first would wait for
    the body, and the socket's timeout would fail this test.)"""
    conn = http.client.HTTPConnection("127.0.0.1", platform.port, timeout=60)
    try:
        conn.putrequest("POST", "/api/train")
        conn.putheader("Content-Type", "multipart/form-data; boundary=zz")
        conn.putheader("Content-Length", str(6 * 1024 * 1024))
        conn.putheader("Authorization", f"Bearer {platform.token}")
        conn.endheaders()
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status == 413, (status, body)
    assert "Request is 6 MB" in body["error"] and "limit" in body["error"], body


def test_unknown_endpoint_and_method(platform: RunningPlatform) -> None:
    assert_readable(platform.get("/api/nothing-here"), 404, "/docs")
    assert_readable(platform.get("/api/generate"), 405)


def test_rejected_requests_create_no_job(platform: RunningPlatform) -> None:
    client = redis.Redis.from_url(platform.redis_url, decode_responses=True)
    streams = [keys.job_stream(kind) for kind in ("train", "generate")]
    queued = [client.xlen(stream) for stream in streams]
    before = job_count(platform)
    resp = platform.post(
        "/api/train", files=[("images", ("x.jpg", b"nope", "image/jpeg"))], data={"name": "Ada"}
    )
    assert_readable(resp, 415, "x.jpg")
    resp = platform.post("/api/generate", json={"mode": "direct", "narration": ""})
    assert_readable(resp, 422, "narration")
    resp = platform.post(
        "/api/generate", json={"mode": "direct", "narration": "hi", "profileId": "ghost"}
    )
    assert_readable(resp, 404, "ghost")
    # The gateway queues a job before it answers, so the job streams show it at once.
    assert [client.xlen(stream) for stream in streams] == queued, "a refused request was queued"
    # The history is written later, by ws-relay, in event order: once a valid job sent
    # after them is listed, anything the refused ones had created would be listed too.
    sentinel = platform.submit()
    wait_for(
        lambda: sentinel in {j["jobId"] for j in platform.get("/api/jobs").json()["jobs"]},
        what="the sentinel job in the history",
    )
    assert job_count(platform) == before + 1


def test_a_valid_train_upload_is_stored_and_queued(platform: RunningPlatform) -> None:
    files = [("images", (f"p{i}.png", png(), "image/png")) for i in range(2)]
    clip = SPEAKERS[0].clip()  # a real person speaking: what training accepts
    files.append(("voice", ("v.wav", clip, "audio/wav")))
    resp = platform.post(
        "/api/train",
        files=files,
        data={"name": "Ada", "voice_text": "Hello", "options": '{"steps": 10}'},
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["jobId"]
    final = platform.wait_state(job_id, {"completed", "failed"})
    assert final["state"] == "completed"
    params = platform.get(f"/api/jobs/{job_id}").json()["params"]
    assert params["name"] == "Ada" and params["options"]["steps"] == 10
    assert len(params["images"]) == 2 and params["voice"].endswith("v.wav")

    store = platform.store()
    assert store.get_bytes(params["images"][0]) == png()
    # Everything sent arrived, as sent: the voice and its transcript too.
    assert set(params) == {"name", "options", "images", "voice", "voiceText"}, params
    assert params["voiceText"] == "Hello"
    assert [store.get_bytes(key) for key in params["images"]] == [png(), png()]
    assert store.get_bytes(params["voice"]) == clip


def test_openapi_docs_are_served(platform: RunningPlatform) -> None:
    assert platform.get("/docs").status_code == 200
    spec = platform.get("/openapi.json").json()
    assert "/api/train" in spec["paths"] and "/api/generate" in spec["paths"]
