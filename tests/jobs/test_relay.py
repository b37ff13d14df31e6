"""ws-relay's apply: exactly-once per event, forward-only state, history in SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from myspinbot import keys
from myspinbot.db import JobHistory
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState
from myspinbot.jobs.relay import Relay
from myspinbot.settings import Settings


@pytest.fixture
def relay(r: redis.Redis, tmp_path: Path) -> Relay:
    settings = Settings(data_dir=tmp_path)
    return Relay(r, JobHistory(settings.sqlalchemy_url), settings)


def publish(r: redis.Redis, ev: dict) -> tuple[str, dict]:
    stream, fields = events.xadd_args(ev)
    return r.xadd(stream, fields), ev


def run_job(r: redis.Redis, job: Job) -> list[tuple[str, dict]]:
    return [
        publish(r, events.created(job)),
        publish(r, events.state(job.id, JobState.running)),
        publish(r, events.progress(job.id, 40, step="work", message="4/10", eta_seconds=3)),
        publish(r, events.progress(job.id, 30, step="work", message="late", eta_seconds=2)),
        publish(r, events.state(job.id, JobState.completed, result={"ok": 1})),
    ]


def test_events_apply_once_in_order(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="generate", params={"mode": "direct"})
    batch = run_job(r, job)
    out = relay.apply(batch)
    assert [o.status for o in out] == ["applied"] * 5
    stream = r.xrange(keys.job_events(job.id))
    assert [eid for eid, _ in stream] == [sid for sid, _ in batch]  # eventId = source id
    progress = [json.loads(f["data"])["progress"] for _, f in stream]
    assert progress == sorted(progress) and progress[-1] == 100  # never backwards

    # Redelivered batch (ws-relay died before acking): nothing new reaches clients.
    again = relay.apply(batch)
    assert {o.status for o in again} == {"duplicate"}
    assert r.xlen(keys.job_events(job.id)) == 5
    assert r.xlen(keys.FANOUT) == 5


def test_history_gets_state_changes_and_milestones(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="train")
    relay.apply(run_job(r, job))
    stored = relay.history.get_job(job.id)
    assert stored is not None and stored.state == JobState.completed
    assert stored.result == {"ok": 1}
    kinds = [(e.kind.value, e.state.value) for e in relay.history.job_events(job.id)]
    assert ("state", "completed") in kinds and kinds[0] == ("created", "queued")


def test_finished_jobs_ignore_later_events(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="generate")
    relay.apply(run_job(r, job))
    late = [
        publish(r, events.state(job.id, JobState.failed, error="too late")),
        publish(r, events.progress(job.id, 50, step="x", message=None, eta_seconds=None)),
    ]
    assert [o.status for o in relay.apply(late)] == ["stale", "stale"]
    assert r.hget(keys.job(job.id), "state") == "completed"


def test_retry_may_move_back_to_queued_only_with_a_new_attempt(
    r: redis.Redis, relay: Relay
) -> None:
    job = Job(type="generate")
    relay.apply(
        [publish(r, events.created(job)), publish(r, events.state(job.id, JobState.running))]
    )
    stale = relay.apply([publish(r, events.state(job.id, JobState.queued, attempt=1))])
    assert stale[0].status == "stale"
    ok = relay.apply(
        [publish(r, events.state(job.id, JobState.queued, attempt=2, message="retry"))]
    )
    assert ok[0].status == "applied" and r.hget(keys.job(job.id), "attempt") == "2"


def test_job_counters_and_durations(r: redis.Redis, relay: Relay) -> None:
    for _ in range(3):
        relay.apply(run_job(r, Job(type="generate")))
    counters = r.hgetall(keys.METRICS_JOBS)
    assert counters["generate|queued"] == "3"
    assert counters["generate|running"] == "3"
    assert counters["generate|completed"] == "3"
    assert r.hget(keys.METRICS_DURATION, "generate|completed|+Inf") == "3"


def test_progress_metrics_reach_clients_and_history(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="train")
    numbers = {"step": 40, "totalSteps": 500, "loss": 0.125, "itPerS": 3.5}
    relay.apply(
        [
            publish(r, events.created(job)),
            publish(r, events.state(job.id, JobState.running)),
            publish(
                r,
                events.progress(
                    job.id,
                    12,
                    step="train",
                    message="Step 40/500",
                    eta_seconds=131,
                    metrics=numbers,
                ),
            ),
        ]
    )
    payload = json.loads(r.xrange(keys.job_events(job.id))[-1][1]["data"])
    assert payload["metrics"] == numbers and payload["etaSeconds"] == 131
    stored = relay.history.job_events(job.id)[-1]
    assert stored.metrics == numbers


def test_an_event_that_arrives_after_the_final_state_stays_out_of_the_history(
    r: redis.Redis, relay: Relay
) -> None:
    # Seen in the fault matrix (kill -9 redis): attempt 1's `running` was read by ws-relay
    # just as Redis died, so it sat in the pending list until reclaimed, while attempt 2 ran
    # to the end. It arrives last, with an older id than the final state.
    job = Job(type="generate")
    relay.apply([publish(r, events.created(job))])
    late = publish(r, events.state(job.id, JobState.running))  # delivery lost with Redis
    relay.apply(
        [
            publish(r, events.state(job.id, JobState.queued, attempt=2, message="retry")),
            publish(r, events.state(job.id, JobState.running, attempt=2)),
            publish(r, events.state(job.id, JobState.completed, attempt=2, result={"ok": 1})),
        ]
    )
    first = relay.apply([late])
    again = relay.apply([late])  # ...and once more: its ack was lost too

    history = relay.history.job_events(job.id)
    states = [e.state.value for e in history if e.kind.value == "state"]
    assert states == ["queued", "running", "completed"]  # the final state is the last one
    assert late[0] not in {e.event_id for e in history}
    assert r.hget(keys.job(job.id), "state") == "completed"
    assert late[0] not in {eid for eid, _ in r.xrange(keys.job_events(job.id))}
    assert [o.status for o in first + again] == ["stale", "stale"]


def test_a_stale_event_redelivered_stays_stale(r: redis.Redis, relay: Relay) -> None:
    job = Job(type="generate")
    relay.apply(run_job(r, job))
    late = publish(r, events.state(job.id, JobState.running, message="late"))
    outcomes = relay.apply([late]) + relay.apply([late])  # redelivered: its ack was lost
    states = [e.state.value for e in relay.history.job_events(job.id) if e.kind.value == "state"]
    assert states == ["running", "completed"]
    assert [o.status for o in outcomes] == ["stale", "stale"]


def test_events_applied_but_lost_before_sql_are_written_on_redelivery(
    r: redis.Redis, relay: Relay
) -> None:
    job = Job(type="generate")
    batch = run_job(r, job)
    relay._apply_redis(batch)  # ws-relay died between Redis and the SQL commit
    assert relay.history.job_events(job.id) == []
    assert {o.status for o in relay.apply(batch)} == {"duplicate"}  # redelivered
    history = relay.history.job_events(job.id)
    # What was applied is what is recorded: the event ids, states and the result.
    assert [e.event_id for e in history] == [sid for sid, _ in batch]
    assert [(e.kind.value, e.state.value) for e in history][-1] == ("state", "completed")
    assert history[-1].result == {"ok": 1}
    stored = relay.history.get_job(job.id)
    assert stored is not None and stored.state == JobState.completed
