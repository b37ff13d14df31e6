"""Per-user job limits against a real Redis: a member's waiting and unfinished jobs are
counted in the same atomic step that queues a job, next to the platform's backlog."""

from __future__ import annotations

import json
import time

import redis

from myspinbot import keys
from myspinbot.jobs import submit
from myspinbot.jobs.models import Job, JobState
from tests.jobs.test_submit import run


def limits(user: str = "alice", queued: int = 2, active: int = 3) -> submit.UserLimits:
    return submit.UserLimits(user, max_queued=queued, max_active=active, grace_s=3600)


def accept(redis_url: str, job: Job, lim: submit.UserLimits | None) -> submit.Accepted:
    return run(
        redis_url,
        lambda c: submit.accept(
            c,
            job,
            idempotency_key=None,
            fingerprint=submit.request_hash({"id": job.id}),
            key_ttl_s=60,
            backlog_max=100,
            limits=lim,
        ),
    )


def applied(r: redis.Redis, job: Job, state: str) -> None:
    """What ws-relay would have written for the job by now."""
    r.hset(keys.job(job.id), mapping={"state": state, "type": job.type, "owner": job.owner or ""})


def test_a_member_waits_behind_their_own_limit_not_others(r: redis.Redis, redis_url: str) -> None:
    jobs = [Job(type="generate", owner="alice") for _ in range(3)]
    outcomes = [accept(redis_url, j, limits()) for j in jobs]
    assert [o.outcome for o in outcomes] == ["queued", "queued", "user_busy"]
    assert (outcomes[2].limit, outcomes[2].depth) == ("queued", 2)
    # Refused means nothing was written: no job message, no event.
    assert r.xlen(keys.job_stream("generate")) == 2 and r.xlen(keys.EVENTS) == 2
    # Another member is not held back by alice's jobs.
    assert accept(redis_url, Job(type="generate", owner="bob"), limits("bob")).outcome == "queued"
    # Nor is an unlimited caller (an admin: no limits).
    assert accept(redis_url, Job(type="generate", owner="root"), None).outcome == "queued"


def test_running_jobs_count_as_unfinished_and_finished_ones_free_places(
    r: redis.Redis, redis_url: str
) -> None:
    first, second = Job(type="generate", owner="alice"), Job(type="generate", owner="alice")
    assert accept(redis_url, first, limits()).outcome == "queued"
    assert accept(redis_url, second, limits()).outcome == "queued"
    applied(r, first, "running")
    applied(r, second, "running")
    third = Job(type="generate", owner="alice")
    assert accept(redis_url, third, limits()).outcome == "queued"  # 2 running + 1 waiting
    refused = accept(redis_url, Job(type="generate", owner="alice"), limits())
    assert (refused.outcome, refused.limit, refused.depth) == ("user_busy", "active", 3)
    applied(r, first, "completed")
    assert accept(redis_url, Job(type="generate", owner="alice"), limits()).outcome == "queued"
    # The finished job left the member's set; the set holds only unfinished ones.
    assert first.id not in r.zrange(keys.user_jobs("alice"), 0, -1)


def test_a_job_whose_hash_expired_long_ago_is_finished(r: redis.Redis, redis_url: str) -> None:
    lim = limits(queued=1)
    old = Job(type="generate", owner="alice")
    assert accept(redis_url, old, lim).outcome == "queued"
    assert accept(redis_url, Job(type="generate", owner="alice"), lim).outcome == "user_busy"
    # Submitted longer ago than a finished job's hash lives, and its hash is gone.
    r.zadd(keys.user_jobs("alice"), {old.id: time.time() - lim.grace_s - 1})
    assert accept(redis_url, Job(type="generate", owner="alice"), lim).outcome == "queued"


def test_a_retry_counts_against_the_limit(r: redis.Redis, redis_url: str) -> None:
    failed = Job(type="generate", owner="alice", state=JobState.failed, attempt=1)
    applied(r, failed, "failed")
    waiting = Job(type="generate", owner="alice")
    assert accept(redis_url, waiting, limits(queued=1)).outcome == "queued"
    try:
        run(redis_url, lambda c: submit.retry(c, failed, limits(queued=1)))
    except submit.UserBusy as exc:
        assert (exc.refused.limit, exc.refused.depth) == ("queued", 1)
    else:
        raise AssertionError("a retry passed the per-user limit")
    applied(r, waiting, "running")
    assert run(redis_url, lambda c: submit.retry(c, failed, limits(queued=1))) == 2
    assert failed.id in r.zrange(keys.user_jobs("alice"), 0, -1)


def test_the_owner_travels_with_the_job(r: redis.Redis, redis_url: str) -> None:
    job = Job(type="generate", owner="alice")
    accept(redis_url, job, limits())
    _, fields = r.xrange(keys.job_stream("generate"))[-1]
    assert json.loads(fields["body"])["owner"] == "alice"
    created = json.loads(r.xrange(keys.EVENTS)[-1][1]["body"])
    assert created["owner"] == "alice"
