"""Accepting jobs against a real Redis: one atomic step bound to the request, a bounded
backlog, and retries of failed jobs from the dead letter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from myspinbot import keys
from myspinbot.jobs import submit
from myspinbot.jobs.models import Job, JobState
from myspinbot.lua import lua

T = TypeVar("T")


def run(redis_url: str, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def accept(redis_url: str, job: Job, key: str | None, body: Any, backlog_max: int = 100) -> Any:
    return run(
        redis_url,
        lambda c: submit.accept(
            c,
            job,
            idempotency_key=key,
            fingerprint=submit.request_hash(body),
            key_ttl_s=60,
            backlog_max=backlog_max,
        ),
    )


def test_a_key_names_one_job_and_one_request(r: redis.Redis, redis_url: str) -> None:
    body = {"narration": "hello"}
    first = accept(redis_url, Job(type="generate"), "k1", body)
    again = accept(redis_url, Job(type="generate"), "k1", body)
    other = accept(redis_url, Job(type="generate"), "k1", {"narration": "something else"})
    assert first.outcome == "queued"
    assert (again.outcome, again.job_id) == ("existing", first.job_id)
    assert (other.outcome, other.job_id) == ("conflict", first.job_id)
    # Queued once: one job message and one `created` event.
    assert r.xlen(keys.job_stream("generate")) == 1 and r.xlen(keys.EVENTS) == 1


def test_queueing_clears_the_pending_inputs_mark(r: redis.Redis, redis_url: str) -> None:
    job = Job(type="train")
    run(redis_url, lambda c: submit.inputs_pending(c, job.id))
    assert r.zscore(keys.SUBMITS_PENDING, job.id) is not None
    accept(redis_url, job, None, {})
    assert r.zscore(keys.SUBMITS_PENDING, job.id) is None


def test_a_full_backlog_refuses_without_dropping_anything(r: redis.Redis, redis_url: str) -> None:
    stream = keys.job_stream("generate")
    r.xgroup_create(stream, "generate", id="0", mkstream=True)
    outcomes = [accept(redis_url, Job(type="generate"), None, {}, 5).outcome for _ in range(8)]
    assert outcomes == ["queued"] * 5 + ["busy"] * 3
    # A consumer finishing two frees two places (once trimmed, as every replica does each
    # second); delivered-but-pending still counts.
    got = r.xreadgroup("generate", "c", {stream: ">"}, count=3)[0][1]
    r.xack(stream, "generate", got[0][0], got[1][0])
    assert r.register_script(lua("myspinbot.runtime", "stream.lua", "trim_acked"))([stream]) == 2
    busy = accept(redis_url, Job(type="generate"), None, {}, 5)
    assert busy.outcome == "queued"
    assert accept(redis_url, Job(type="generate"), None, {}, 5).outcome == "queued"
    refused = accept(redis_url, Job(type="generate"), None, {}, 5)
    assert (refused.outcome, refused.depth) == ("busy", 5)
    assert r.xlen(stream) == 5  # only the two acknowledged entries were trimmed


def test_a_retried_key_is_answered_even_when_the_backlog_is_full(
    r: redis.Redis, redis_url: str
) -> None:
    first = accept(redis_url, Job(type="generate"), "k", {"a": 1}, backlog_max=1)
    assert accept(redis_url, Job(type="generate"), None, {}, 1).outcome == "busy"
    again = accept(redis_url, Job(type="generate"), "k", {"a": 1}, backlog_max=1)
    assert (again.outcome, again.job_id) == ("existing", first.job_id)


def test_retry_requeues_a_failed_job_with_its_inputs(r: redis.Redis, redis_url: str) -> None:
    job = Job(type="train", params={"images": ["jobs/x/inputs/images/00-a.png"]})
    stream = keys.job_stream("train")
    dead = keys.dead_letter(stream)
    r.hset(keys.job(job.id), mapping={"state": "failed", "type": "train", "attempt": "3"})
    r.xadd(dead, {"body": submit.job_message(job), "error": "boom", "attempt": "3"})
    failed = job.model_copy(update={"state": JobState.failed, "attempt": 3})
    letters = run(redis_url, lambda c: submit.dead_letters(c, 10))
    assert [(d.job_id, d.error) for d in letters] == [(job.id, "boom")]

    assert run(redis_url, lambda c: submit.retry(c, failed)) == 4
    assert r.xlen(dead) == 0
    _, fields = r.xrange(stream)[-1]
    body = json.loads(fields["body"])
    assert body["params"] == job.params and body["attempt"] == 4 and fields["attempt"] == "1"
    created = json.loads(r.xrange(keys.EVENTS)[-1][1]["body"])
    assert created["kind"] == "created" and created["attempt"] == 4


def test_only_failed_jobs_are_retried(r: redis.Redis, redis_url: str) -> None:
    job = Job(type="generate", state=JobState.running)
    r.hset(keys.job(job.id), mapping={"state": "running", "type": "generate"})
    try:
        run(redis_url, lambda c: submit.retry(c, job))
    except submit.RetryError as exc:
        assert "only failed jobs can be retried" in str(exc)
    else:
        raise AssertionError("a running job was retried")
    assert r.xlen(keys.job_stream("generate")) == 0
