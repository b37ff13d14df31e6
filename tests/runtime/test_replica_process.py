"""One function replica as a real process (`myspinbot function run DIR`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from myspinbot import keys
from myspinbot.netutil import free_port
from tests.support import ROOT, SCRIPTED, wait_for

ECHO = ROOT / "tests" / "functions" / "echo"


def start(function_dir: Path, redis_url: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MYSPINBOT_REDIS_URL": redis_url,
        "MYSPINBOT_METRICS_PORT": str(free_port()),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "myspinbot", "function", "run", str(function_dir), *extra],
        env=env,
        cwd=ROOT,
    )


@pytest.fixture
def echo(redis_url: str, r: redis.Redis) -> Iterator[str]:
    port = free_port()
    proc = start(ECHO, redis_url, "--http-port", str(port))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/ping", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30, what="the echo function")
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_http_request_becomes_a_nuclio_event(echo: str) -> None:
    resp = httpx.post(echo + "/things?a=1&b=two", json={"x": 1}, headers={"X-Test": "yes"})
    got = resp.json()
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert got["method"] == "POST" and got["path"] == "/things"
    assert got["fields"] == {"a": "1", "b": "two"} and got["header"] == "yes"
    assert got["body"] == {"x": 1}  # JSON bodies arrive decoded, as in Nuclio
    assert got["trigger"] == ["http", "http"] and got["inits"] == 1  # init_context per worker
    raw = httpx.post(echo + "/", content=b"hello", headers={"content-type": "text/plain"}).json()
    assert raw["body"] == "hello"


def test_http_events_are_shaped_as_nuclio_shapes_them(echo: str) -> None:
    """What Nuclio's processor and wrapper hand a handler: JSON decoded only for exactly
    `application/json`, a naive whole-second timestamp, an empty url, string worker ids."""
    charset = httpx.post(
        echo + "/", content=b'{"x": 1}', headers={"content-type": "application/json; charset=utf-8"}
    ).json()
    assert charset["bodyType"] == "bytes" and charset["body"] == '{"x": 1}'
    stamp, naive = charset["timestamp"]
    assert naive and "." not in stamp  # naive, whole seconds
    assert charset["url"] == ""
    assert charset["worker"] in {"0", "1"}


def test_handler_outputs_map_to_responses(echo: str) -> None:
    t = httpx.get(echo + "/tuple")
    assert t.status_code == 201 and t.json() == {"made": True}
    b = httpx.get(echo + "/bytes")
    assert b.content == b"\x00\x01\x02" and b.headers["x-kind"] == "raw"
    assert b.headers["content-type"] == "application/octet-stream"
    assert httpx.get(echo + "/text").text == "plain words"
    err = httpx.get(echo + "/raise")
    assert err.status_code == 500 and err.headers["content-type"] == "text/plain"
    # Nuclio's wrapper's answer, less the traceback it appends (that goes to the log)
    assert err.text == 'Exception caught in handler - "boom"'


def test_every_worker_gets_its_own_context(echo: str) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        workers = {r.json()["worker"] for r in pool.map(lambda _: httpx.get(echo + "/"), range(40))}
    assert workers <= {"0", "1"} and workers  # strings, as Nuclio's wrapper passes them


def test_sigterm_hands_back_a_running_job_and_exits_zero(redis_url: str, r: redis.Redis) -> None:
    proc = start(SCRIPTED, redis_url, "--replica", "0")
    wait_for(lambda: r.hexists(keys.FUNCTIONS, "scripted-0"), timeout=30, what="registration")
    stream = keys.job_stream("generate")
    job = {"id": "held", "type": "generate", "params": {"stage": '{"hold": 30}'}}
    first = r.xadd(stream, {"body": json.dumps(job), "attempt": "1"})
    wait_for(lambda: r.llen("test:runs:held"), timeout=30, what="the job to start")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0  # drainTimeoutSeconds is 2 in the fixture
    assert r.xpending(stream, "generate")["pending"] == 0
    last_id, fields = r.xrange(stream)[-1]
    assert last_id != first and json.loads(fields["body"])["id"] == "held"
    assert not r.hexists(keys.FUNCTIONS, "scripted-0")  # deregistered


def test_sigterm_when_idle_exits_promptly(redis_url: str, r: redis.Redis) -> None:
    proc = start(SCRIPTED, redis_url, "--replica", "1")
    wait_for(lambda: r.hexists(keys.FUNCTIONS, "scripted-1"), timeout=30, what="registration")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
