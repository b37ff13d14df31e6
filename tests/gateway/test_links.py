"""Download links are signed at every read with a short life and never stored: after a
real train and generate run, no signed URL is in any SQL row, Redis value or log file of
the platform, while every answer (REST and WebSocket) carries links that work until they
expire.

Real parts: `myspinbot up` with the train and generate functions (tiny model), Redis,
the embedded S3, SQLite and PostgreSQL, tritonserver, ffmpeg.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
import sqlalchemy as sa

from tests.conftest import _postgres_schema_url
from tests.functions.test_train_function import follow, submit
from tests.media_fixtures import voice_clip
from tests.support import FUNCTIONS, RunningPlatform, wait_for

pytestmark = pytest.mark.timeout(900)  # a real training and video per database
LINK_TTL_S = 10
# How a signed S3 URL gives itself away (SigV4 and the older SigV2 query forms).
SIGNATURE_MARKS = (b"x-amz-signature", b"signature=")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('links-db') / 'myspinbot.db'}"
        return
    yield from _postgres_schema_url()


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / n for n in ("status", "ws-relay", "train", "generate")]
    env = {
        "MYSPINBOT_LINK_TTL_S": str(LINK_TTL_S),
        # The cheapest video: links are what is tested here, not its looks.
        "MYSPINBOT_VIDEO_SIZE": "128",
        "MYSPINBOT_UPSCALER": "lanczos",
        "MYSPINBOT_ANIMATOR": "weightfree",
        "MYSPINBOT_DATABASE_URL": database_url,
    }
    p = RunningPlatform(tmp_path_factory.mktemp("links"), functions=functions, env=env)
    yield p.start(timeout=600)  # the first platform of a run exports the tiny model
    assert p.stop() == 0


@pytest.fixture(scope="module")
def run(platform: RunningPlatform) -> dict[str, Any]:
    """A trained profile and a video made from it; the WebSocket messages of the video."""
    train_id = submit(platform, {"steps": 4, "rank": 4, "seed": 3}, voice=voice_clip())
    trained = platform.wait_state(train_id, {"completed", "failed"}, timeout=600)
    assert trained["state"] == "completed", trained
    profile_id = trained["result"]["profileId"]
    body = {"profileId": profile_id, "mode": "direct", "narration": "Hello there."}
    resp = platform.post("/api/generate", json=body)
    assert resp.status_code == 202, resp.text
    gen_id = resp.json()["jobId"]
    messages = follow(platform, gen_id, timeout=600)
    assert messages[-1]["state"] == "completed", messages[-1]
    return {"train": train_id, "generate": gen_id, "profile": profile_id, "ws": messages}


def signed(text: bytes) -> bool:
    low = text.lower()
    return any(mark in low for mark in SIGNATURE_MARKS)


def expires_at(url: str) -> float:
    q = parse_qs(urlsplit(url).query)
    signed_at = calendar.timegm(time.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    return signed_at + int(q["X-Amz-Expires"][0])


def download(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30)


def test_every_answer_carries_working_short_lived_links(
    platform: RunningPlatform, run: dict[str, Any]
) -> None:
    status = platform.status(run["generate"])["result"]
    video = status["video"]
    assert video["key"].endswith("video.mp4") and video["contentType"] == "video/mp4"
    assert parse_qs(urlsplit(video["url"]).query)["X-Amz-Expires"] == [str(LINK_TTL_S)]
    links = [video["url"]] + [a["url"] for a in status["artifacts"]]
    detail = platform.get(f"/api/jobs/{run['generate']}").json()
    links += [
        a["url"] for e in detail["events"] if e.get("result") for a in e["result"]["artifacts"]
    ]
    page = platform.get("/api/jobs").json()["jobs"]
    links += [j["result"]["video"]["url"] for j in page if j["type"] == "generate"]
    profile = platform.get(f"/api/profiles/{run['profile']}").json()
    links += [a["url"] for a in profile["artifacts"] if a.get("size") is not None]
    trained = platform.status(run["train"])["result"]
    links += [a["url"] for a in trained["artifacts"] if a.get("size") is not None]
    done = run["ws"][-1]
    links.append(done["result"]["video"]["url"])
    for url in links:
        assert download(url).status_code == 200, url


def test_no_signed_url_is_stored_or_logged(
    platform: RunningPlatform, run: dict[str, Any], database_url: str
) -> None:
    # Links were handed out and used (so anything that logs requests has logged them).
    assert download(platform.status(run["generate"])["result"]["video"]["url"]).is_success

    client = redis.Redis.from_url(platform.redis_url)
    readers = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1),
        b"stream": lambda k: client.xrange(k),
    }
    keys = list(client.scan_iter(count=1000))
    assert any(b"job:" in k for k in keys), keys  # the jobs are there to be searched
    for key in keys:
        value = readers[client.type(key)](key)
        assert not signed(repr(value).encode()), (key, value)

    engine = sa.create_engine(database_url)
    try:
        rows = 0
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    rows += 1
                    assert not signed(repr(tuple(row)).encode()), (table, row)
        assert rows > 0
    finally:
        engine.dispose()

    # Every file of the platform but the stored objects: logs, Redis and SQLite files.
    objects = platform.data_dir / "s3"
    files = [f for f in platform.data_dir.rglob("*") if f.is_file() and objects not in f.parents]
    assert any(f.suffix == ".log" for f in files), files
    for f in files:
        assert not signed(f.read_bytes()), f"a signed URL is in {f}"


def test_a_link_works_until_it_expires_and_a_new_read_signs_a_new_one(
    platform: RunningPlatform, run: dict[str, Any]
) -> None:
    url = platform.status(run["generate"])["result"]["video"]["url"]
    first = download(url)
    assert first.status_code == 200 and first.content
    ends = expires_at(url)
    wait_for(lambda: time.time() > ends + 1, timeout=LINK_TTL_S + 30, what="the link to expire")
    expired = download(url)
    assert expired.status_code in (400, 403), expired.status_code
    assert expired.content != first.content
    fresh = platform.status(run["generate"])["result"]["video"]["url"]
    assert fresh != url
    again = download(fresh)
    assert again.status_code == 200 and again.content == first.content
