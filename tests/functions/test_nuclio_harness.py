"""Every function's handler runs unchanged under Nuclio's own test harness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import nuclio_sdk
import pytest
import redis
from nuclio_sdk.test import Platform

from myspinbot import keys
from myspinbot.jobs import events
from myspinbot.jobs.models import Job
from myspinbot.runtime.config import load_function_config
from myspinbot.runtime.loader import load_handler_module
from myspinbot.settings import get_settings

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture(autouse=True)
def env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, r: redis.Redis, tmp_path: Path
) -> Iterator[None]:
    monkeypatch.setenv("MYSPINBOT_REDIS_URL", redis_url)
    monkeypatch.setenv("MYSPINBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def load(name: str) -> ModuleType:
    d = FUNCTIONS / name
    module = load_handler_module(d, load_function_config(d))
    return module


def test_every_function_is_covered() -> None:
    assert {p.name for p in FUNCTIONS.iterdir() if (p / "function.yaml").exists()} == {
        "train",
        "generate",
        "status",
        "ws-relay",
    }


def test_ws_relay_applies_an_event(r: redis.Redis) -> None:
    job = Job(type="generate")
    source_id = r.xadd(*events.xadd_args(events.created(job)))
    event = nuclio_sdk.Event(
        body=json.dumps(events.created(job)).encode(),
        _id=source_id,
        content_type="application/json",
    )
    out = Platform().call_handler(load("ws-relay").handler, event)
    assert out == {"applied": 1, "received": 1}
    assert r.hget(keys.job(job.id), "state") == "queued"


def test_status_answers_queries(r: redis.Redis) -> None:
    handler = load("status").handler
    platform = Platform()
    listing = platform.call_handler(handler, nuclio_sdk.Event(path="/jobs", method="GET"))
    assert listing.status_code == 200 and listing.body["total"] == 0
    missing = platform.call_handler(handler, nuclio_sdk.Event(path="/status/nope", method="GET"))
    assert missing.status_code == 404 and "nope" in missing.body["error"]


@pytest.mark.parametrize("name, job_type", [("train", "train"), ("generate", "generate")])
def test_job_functions_say_plainly_what_they_cannot_do(
    r: redis.Redis, name: str, job_type: str
) -> None:
    job = Job(type=job_type)  # type: ignore[arg-type]
    event = nuclio_sdk.Event(body={"id": job.id, "type": job_type, "params": {}})
    out = Platform().call_handler(load(name).handler, event)
    assert out["state"] == "failed"
    emitted = [json.loads(f["body"]) for _, f in r.xrange(keys.EVENTS)]
    assert emitted[-1]["state"] == "failed" and "not available" in emitted[-1]["error"]
