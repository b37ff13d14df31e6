"""The start-up repair against real Redis, SQL and S3: SQL learns what Redis holds, jobs
Redis lost are queued again (never silently `queued`), abandoned inputs are swept."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from myspinbot import keys
from myspinbot.db import JobHistory
from myspinbot.jobs import events, submit
from myspinbot.jobs.models import Job, JobState
from myspinbot.jobs.relay import Relay
from myspinbot.jobs.repair import RedisRestartWatch, reconcile, sweep_abandoned_inputs
from myspinbot.settings import Settings
from myspinbot.storage import ArtifactStore, EmbeddedS3


@pytest.fixture
def relay(r: redis.Redis, tmp_path: Path) -> Iterator[Relay]:
    settings = Settings(data_dir=tmp_path)
    rl = Relay(r, JobHistory(settings.sqlalchemy_url), settings)
    yield rl
    rl.close()


def apply_all(r: redis.Redis, rl: Relay) -> None:
    """What ws-relay does once it starts: apply every event waiting."""
    batch = [(sid, json.loads(f["body"])) for sid, f in r.xrange(keys.EVENTS)]
    rl.apply(batch)
    r.delete(keys.EVENTS)


def queued_messages(r: redis.Redis, job_type: str) -> list[dict]:
    return [json.loads(f["body"]) for _, f in r.xrange(keys.job_stream(job_type))]


def test_jobs_redis_lost_are_queued_again_with_a_reason(r: redis.Redis, relay: Relay) -> None:
    history = relay.history
    lost_running = Job(type="train", state=JobState.running, params={"images": ["a.png"]})
    lost_queued = Job(type="generate", state=JobState.queued)
    done = Job(type="generate", state=JobState.completed)
    history.record([lost_running, lost_queued, done], [])

    out = reconcile(r, history, relay.writer, job_ttl_s=3600)
    assert sorted(out.requeued) == sorted([lost_running.id, lost_queued.id])
    apply_all(r, relay)
    train = queued_messages(r, "train")
    assert [(m["id"], m["params"], m["attempt"]) for m in train] == [
        (lost_running.id, {"images": ["a.png"]}, 2)  # it was running: a new attempt
    ]
    assert [m["id"] for m in queued_messages(r, "generate")] == [lost_queued.id]
    for job in (lost_running, lost_queued):
        live = r.hgetall(keys.job(job.id))
        assert live["state"] == "queued" and "Queued again" in live["message"]
        stored = history.get_job(job.id)
        assert stored is not None and "Queued again" in (stored.message or "")
    assert not r.exists(keys.job(done.id))  # finished jobs are left alone


def test_a_queued_job_whose_message_is_gone_is_queued_again(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="generate")
    r.xadd(*events.xadd_args(events.created(job)))
    apply_all(r, relay)  # queued in Redis, but its message never made it (or was trimmed)
    waiting = Job(type="generate")
    r.xadd(*events.xadd_args(events.created(waiting)))
    apply_all(r, relay)
    r.xadd(keys.job_stream("generate"), {"body": submit.job_message(waiting), "attempt": "1"})

    out = reconcile(r, relay.history, relay.writer, job_ttl_s=3600)
    assert out.requeued == [job.id]  # the job whose message is on the stream is left be
    assert [m["id"] for m in queued_messages(r, "generate")] == [waiting.id, job.id]


def test_sql_learns_the_jobs_redis_holds(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="generate")
    for ev in (events.created(job), events.state(job.id, JobState.completed, result={"x": 1})):
        r.xadd(*events.xadd_args(ev))
    batch = [(sid, json.loads(f["body"])) for sid, f in r.xrange(keys.EVENTS)]
    relay._apply_redis(batch)  # applied in Redis; SQL never heard of it
    assert relay.history.get_job(job.id) is None
    out = reconcile(r, relay.history, relay.writer, job_ttl_s=3600)
    assert out.synced_to_sql == 1 and out.requeued == []
    stored = relay.history.get_job(job.id)
    assert stored is not None and stored.state == JobState.completed


def test_a_stuck_job_older_than_the_ttl_is_failed_not_rerun(r: redis.Redis, relay: Relay) -> None:
    old = Job(type="generate", state=JobState.running, updated_at=time.time() - 7200)
    relay.history.record([old], [])
    out = reconcile(r, relay.history, relay.writer, job_ttl_s=3600)
    assert out.failed == [old.id] and out.requeued == []
    apply_all(r, relay)
    stored = relay.history.get_job(old.id)
    assert stored is not None and stored.state == JobState.failed
    assert "never recorded" in (stored.error or "")
    assert queued_messages(r, "generate") == []


def test_sweeper_deletes_inputs_of_submits_that_never_queued(
    r: redis.Redis, tmp_path: Path
) -> None:
    s3 = EmbeddedS3(tmp_path / "s3", access_key="key", secret_key="secret-key")
    s3.start()
    try:
        store = ArtifactStore(s3.endpoint, "inputs", "key", "secret-key")
        store.ensure_bucket()
        for job_id in ("abandoned", "fresh", "queued"):
            store.put_bytes(f"jobs/{job_id}/inputs/images/00-a.png", b"png", "image/png")
        r.zadd(keys.SUBMITS_PENDING, {"abandoned": time.time() - 100, "fresh": time.time()})
        # "queued": its submit finished, which removed its mark in the same step.
        assert sweep_abandoned_inputs(r, store, grace_s=30) == ["abandoned"]
        assert store.list_keys("jobs/abandoned/") == []
        assert store.list_keys("jobs/fresh/") and store.list_keys("jobs/queued/")
        assert r.zrange(keys.SUBMITS_PENDING, 0, -1) == ["fresh"]
    finally:
        s3.stop()


def test_redis_coming_back_empty_is_repaired_from_sql(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="generate", owner="alice", params={"narration": "kept"})
    for ev in (events.created(job), events.state(job.id, JobState.running)):
        r.xadd(*events.xadd_args(ev))
    apply_all(r, relay)
    watch = RedisRestartWatch(r, relay, job_ttl_s=3600, every_s=3600)
    try:
        assert watch.check() is False  # nothing happened to Redis
        r.flushdb()  # Redis restarted without its data
        assert watch.check() is True
    finally:
        watch.close()
    apply_all(r, relay)
    live = r.hgetall(keys.job(job.id))
    assert live["state"] == "queued" and live["attempt"] == "2"
    assert live["owner"] == "alice"  # still hers: ownership survives the repair
    assert [(m["id"], m["params"], m["owner"]) for m in queued_messages(r, "generate")] == [
        (job.id, {"narration": "kept"}, "alice")
    ]
