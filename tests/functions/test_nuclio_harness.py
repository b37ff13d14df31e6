"""Every function's handler runs unchanged under Nuclio's own test harness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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
from myspinbot.storage import EmbeddedS3

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedS3(tmp_path_factory.mktemp("s3")) as s3:
        yield s3.endpoint


@pytest.fixture(autouse=True)
def env(
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    r: redis.Redis,
    tmp_path: Path,
    s3_endpoint: str,
) -> Iterator[None]:
    monkeypatch.setenv("MYSPINBOT_REDIS_URL", redis_url)
    monkeypatch.setenv("MYSPINBOT_S3_ENDPOINT", s3_endpoint)
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


def emitted(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(f["body"]) for _, f in r.xrange(keys.EVENTS)]


def test_generate_fails_a_malformed_job_without_retrying(r: redis.Redis) -> None:
    job = Job(type="generate")
    event = nuclio_sdk.Event(body={"id": job.id, "type": "generate", "params": {}})
    out = Platform().call_handler(load("generate").handler, event)
    assert out["state"] == "failed"  # returned, not raised: the runtime acks it
    last = emitted(r)[-1]
    assert last["state"] == "failed" and "malformed" in last["error"] and "mode" in last["error"]


def test_train_fails_a_malformed_job_without_retrying(r: redis.Redis) -> None:
    job = Job(type="train")
    event = nuclio_sdk.Event(body={"id": job.id, "type": "train", "params": {"name": "x"}})
    out = Platform().call_handler(load("train").handler, event)
    assert out["state"] == "failed"  # returned, not raised: the runtime acks it
    last = emitted(r)[-1]
    assert last["state"] == "failed" and "images" in last["error"]
