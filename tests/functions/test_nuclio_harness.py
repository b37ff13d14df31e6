"""Every function's handler runs unchanged under Nuclio's own test harness."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from secrets import token_urlsafe
from types import ModuleType
from typing import Any

import nuclio_sdk
import pytest
import redis
import yaml
from nuclio_sdk.test import Platform

from myspinbot import keys
from myspinbot.jobs import events, repair
from myspinbot.jobs.models import Job
from myspinbot.runtime import hosting
from myspinbot.runtime.config import load_function_config
from myspinbot.runtime.loader import load_handler_module
from myspinbot.runtime.process import make_contexts
from myspinbot.settings import get_settings
from myspinbot.storage import EmbeddedS3
from tests.functions.nuclio_processor import processor_config

INTERNAL_TOKEN = "internal-token-of-this-test"
AS_GATEWAY = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
S3_KEYS = ("harness", token_urlsafe(24))


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedS3(
        tmp_path_factory.mktemp("s3"), access_key=S3_KEYS[0], secret_key=S3_KEYS[1]
    ) as s3:
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
    monkeypatch.setenv("MYSPINBOT_INTERNAL_TOKEN", INTERNAL_TOKEN)  # what the gateway sends
    monkeypatch.setenv("MYSPINBOT_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("MYSPINBOT_S3_ACCESS_KEY", S3_KEYS[0])
    monkeypatch.setenv("MYSPINBOT_S3_SECRET_KEY", S3_KEYS[1])
    monkeypatch.setenv("MYSPINBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    get_settings.cache_clear()
    # ws-relay's init_context starts a Redis restart watch and an input sweeper, daemon
    # threads that live as long as the replica. Here the replica is this test: stop them
    # with it, or they keep running in the pytest process and "repair" (re-queue) the jobs
    # of later tests when the `r` fixture flushes Redis.
    # The classes themselves are patched, not the module's names: load() caches the handler
    # module, which keeps the classes it imported the first time.
    started: list[Any] = []
    for cls in (repair.RedisRestartWatch, repair.Sweeper):
        monkeypatch.setattr(cls, "__init__", _recorded(cls.__init__, started))
    yield
    for thread in started:
        thread.close()
    get_settings.cache_clear()


def _recorded(real_init: Any, started: list[Any]) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        started.append(self)

    return __init__


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
    listing = platform.call_handler(
        handler, nuclio_sdk.Event(path="/jobs", method="GET", headers=AS_GATEWAY)
    )
    assert listing.status_code == 200 and listing.body["total"] == 0
    missing = platform.call_handler(
        handler, nuclio_sdk.Event(path="/status/nope", method="GET", headers=AS_GATEWAY)
    )
    assert missing.status_code == 404 and "nope" in missing.body["error"]
    stranger = platform.call_handler(handler, nuclio_sdk.Event(path="/jobs", method="GET"))
    assert stranger.status_code == 401


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


# --- One contract, whichever runner -------------------------------------------------------
# Nuclio's wrapper hands a handler a context whose worker id is a string ("0"), and events
# whose body stays bytes unless the content type is exactly `application/json`, with a naive
# whole-second UTC timestamp and an empty url (pkg/processor/runtime/rpc/encoder, nuclio_sdk's
# msgpack deserializer). Ours: tests/runtime/test_replica_process.py shows the same shapes.
NUCLIO_TIME = datetime.datetime(2026, 12, 5, 13, 0, 7)  # naive, whole seconds


def nuclio_context(kind: str = "http") -> nuclio_sdk.Context:
    logger = nuclio_sdk.Logger(logging.INFO)
    return nuclio_sdk.Context(
        logger, nuclio_sdk.Platform("kube"), "0", nuclio_sdk.TriggerInfo(kind, "default-http")
    )


def nuclio_event(body: bytes, **kw: Any) -> nuclio_sdk.Event:
    return nuclio_sdk.Event(
        body=body,
        content_type="application/json; charset=utf-8",
        trigger=nuclio_sdk.TriggerInfo(kw.pop("kind", "http"), "default-http"),
        timestamp=NUCLIO_TIME,
        url="",
        **kw,
    )


def test_status_answers_nuclio_shaped_events() -> None:
    module = load("status")
    context = nuclio_context()
    module.init_context(context)
    out = module.handler(context, nuclio_event(b"", path="/jobs", method="GET", headers=AS_GATEWAY))
    assert out.status_code == 200 and out.body["total"] == 0


@pytest.mark.parametrize("shape", ["ours", "nuclio"])
def test_ws_relay_applies_events_of_either_shape(r: redis.Redis, shape: str) -> None:
    job = Job(type="generate")
    body = json.dumps(events.created(job))
    source_id = r.xadd(*events.xadd_args(events.created(job)))
    module = load("ws-relay")
    if shape == "nuclio":
        context = nuclio_context("redis-stream")
        event = nuclio_event(body.encode(), _id=source_id, kind="redis-stream")
    else:
        context = nuclio_sdk.Context(nuclio_sdk.Logger(logging.INFO), None, "0")
        event = nuclio_sdk.Event(body=json.loads(body), _id=source_id)
    module.init_context(context)
    assert module.handler(context, [event]) == {"applied": 1, "received": 1}
    assert r.hget(keys.job(job.id), "state") == "queued"


@pytest.mark.parametrize("name", ["generate", "train"])
def test_job_functions_take_bytes_bodies_and_refuse_http(r: redis.Redis, name: str) -> None:
    module = load(name)
    context = nuclio_context("redis-stream")
    module.init_context(context)
    job = Job(type=name)
    body = json.dumps({"id": job.id, "type": name, "params": {}}).encode()
    out = module.handler(context, nuclio_event(body, kind="redis-stream"))
    assert out["state"] == "failed"  # malformed params: read from the bytes body, then failed
    assert emitted(r)[-1]["jobId"] == job.id
    refused = module.handler(context, nuclio_event(body))  # Nuclio's default HTTP trigger
    assert refused.status_code == 404


@pytest.fixture
def keep_fresh_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    module = load("generate")
    monkeypatch.setattr(module, "keep_fresh", lambda user_data, settings: calls.append(user_data))
    return calls


def test_keep_fresh_runs_once_per_replica_under_our_runtime(keep_fresh_calls: list[object]) -> None:
    module = load("generate")
    config = load_function_config(FUNCTIONS / "generate")
    (trigger,) = config.stream_triggers.values()
    contexts = make_contexts(module, "jobs", "redis-stream", trigger.workers, logger=None)
    assert [c.worker_id for c in contexts] == ["0", "1"]  # strings, as under Nuclio
    assert keep_fresh_calls == [contexts[0].user_data]


def test_keep_fresh_runs_once_per_replica_under_nuclio(
    keep_fresh_calls: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nuclio starts the process for worker "0" of its default HTTP trigger; in it, join()
    runs the stream trigger's two workers, Nuclio's context being worker "0"."""
    conf = tmp_path / "processor.yaml"
    conf.write_text(yaml.safe_dump(processor_config(FUNCTIONS / "generate")))
    monkeypatch.setenv("NUCLIO_FUNCTION_NAME", "generate")
    monkeypatch.setenv("NUCLIO_FUNCTION_INSTANCE", "generate-abc12")
    monkeypatch.setenv("MYSPINBOT_NUCLIO_PROCESSOR_CONFIG", str(conf))
    monkeypatch.setattr(hosting, "_hosted", None)
    module = load("generate")
    context = nuclio_context()
    module.init_context(context)
    replica = hosting._hosted
    assert replica is not None and replica.runner == "nuclio"
    try:
        assert keep_fresh_calls == [context.user_data]  # once: not again for worker "1"
        assert replica.consumer == "generate-generate-abc12"
    finally:
        replica.shutdown(0)
