"""Leases against a real Redis: a run whose delivery another replica took over can
write nothing more, and learns it at its next progress report."""

from __future__ import annotations

import json
from typing import Any

import nuclio_sdk
import pytest
import redis

from myspinbot import keys
from myspinbot.jobs import submit
from myspinbot.jobs.handler import JobRun, job_handler
from myspinbot.jobs.models import Job
from myspinbot.jobs.progress import Step
from myspinbot.runtime.config import ATTEMPT_HEADER, LEASE_HEADER
from myspinbot.runtime.lease import Lease, LeaseLost
from myspinbot.runtime.process import make_logger

STREAM = keys.job_stream("generate")
GROUP = "generate"


def deliver(r: redis.Redis, consumer: str) -> Lease:
    """The job message, read (or taken over) by `consumer`; its lease."""
    mine = r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=1)
    if mine:
        message_id = mine[0][1][0][0]
    else:
        message_id = r.xautoclaim(STREAM, GROUP, consumer, 0, "0-0")[1][0][0]
    info = r.xpending_range(STREAM, GROUP, message_id, message_id, 1)[0]
    return Lease(STREAM, GROUP, message_id, consumer, int(info["times_delivered"]))


def event(job: Job, lease: Lease) -> nuclio_sdk.Event:
    return nuclio_sdk.Event(
        body=json.loads(submit.job_message(job)),
        headers={ATTEMPT_HEADER: str(lease.deliveries), LEASE_HEADER: lease.header()},
    )


def context(r: redis.Redis) -> Any:
    ctx = nuclio_sdk.Context(make_logger("test", "WARNING"))
    ctx.user_data.redis = r
    return ctx


def states(r: redis.Redis, job_id: str) -> list[tuple[str, Any]]:
    out = []
    for _, f in r.xrange(keys.EVENTS):
        ev = json.loads(f["body"])
        if ev["jobId"] == job_id:
            out.append((ev["kind"], ev.get("state") or ev.get("progress")))
    return out


@pytest.fixture
def job(r: redis.Redis) -> Job:
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    j = Job(type="generate")
    r.xadd(STREAM, {"body": submit.job_message(j), "attempt": "1"})
    return j


def test_a_taken_over_run_stops_at_its_next_report(r: redis.Redis, job: Job) -> None:
    first = deliver(r, "a-0")
    reports: list[int] = []

    @job_handler(steps=[Step("work", 1)])
    def paused_then_resumed(run: JobRun) -> dict[str, Any]:
        run.progress("work", 0.5)
        reports.append(1)
        deliver(r, "b-0")  # meanwhile replica b took the job over (this one looked dead)
        run.progress("work", 1.0)
        reports.append(2)
        return {"written": "twice"}

    with pytest.raises(LeaseLost):
        paused_then_resumed(context(r), event(job, first))
    assert reports == [1]
    assert states(r, job.id) == [("state", "running"), ("progress", 50.0)]
    # b holds it now, and the message is still pending for b's run.
    assert r.xpending_range(STREAM, GROUP, "-", "+", 10)[0]["consumer"] == "b-0"


def test_the_final_event_and_the_ack_are_one_step(r: redis.Redis, job: Job) -> None:
    lost = deliver(r, "a-0")
    taken = deliver(r, "b-0")

    @job_handler(steps=[Step("work", 1)])
    def quick(run: JobRun) -> dict[str, Any]:
        return {"by": run.lease.consumer if run.lease else None}

    quick(context(r), event(job, taken))
    assert states(r, job.id)[-1] == ("state", "completed")
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    # The old holder, resumed after all that, cannot even say it started.
    with pytest.raises(LeaseLost):
        quick(context(r), event(job, lost))
    assert [s for s in states(r, job.id) if s[1] == "completed"] == [("state", "completed")]
    assert len(states(r, job.id)) == 2  # b's running and completed only
