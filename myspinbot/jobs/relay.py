"""ws-relay's work: apply job events to live state (Redis) and history (SQL).

This is the one writer of job state. Each batch of events from the global
events stream is applied with one pipelined round-trip of `apply.lua` (atomic
and idempotent per event), then state changes and progress milestones go to SQL
in one transaction. A crash between the two is harmless: the redelivered batch
is recognised as already applied in Redis and written to SQL again, where
duplicates are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from myspinbot import keys, metrics
from myspinbot.db import JobHistory
from myspinbot.jobs.livestate import job_from_hash, pairs_to_dict
from myspinbot.jobs.models import EventKind, Job, JobEvent, JobState
from myspinbot.runtime.scripts import lua
from myspinbot.settings import Settings

FANOUT_MAXLEN = 10_000


@dataclass
class Applied:
    status: str  # applied | duplicate | stale
    event: JobEvent | None
    job: Job | None
    milestone: bool


class Relay:
    def __init__(self, client: redis.Redis, history: JobHistory, settings: Settings) -> None:
        self._redis = client
        self._history = history
        self._settings = settings
        self._apply = client.register_script(lua("myspinbot.jobs", "apply.lua"))

    def apply(self, batch: list[tuple[str, dict[str, Any]]]) -> list[Applied]:
        """Apply (source id, event) pairs, in order; returns what became of each."""
        pipe = self._redis.pipeline(transaction=False)
        for source_id, ev in batch:
            job_id = ev["jobId"]
            self._apply(
                keys=[
                    keys.job(job_id),
                    keys.job_events(job_id),
                    keys.FANOUT,
                    keys.METRICS_JOBS,
                    keys.METRICS_DURATION,
                ],
                args=[
                    source_id,
                    json.dumps(ev),
                    self._settings.job_events_maxlen,
                    FANOUT_MAXLEN,
                    self._settings.job_ttl_s,
                    metrics.job_duration_buckets_json(),
                ],
                client=pipe,
            )
        outcomes = [
            _outcome(source_id, ev, res)
            for (source_id, ev), res in zip(batch, pipe.execute(), strict=True)
        ]
        self._record(outcomes)
        return outcomes

    def _record(self, outcomes: list[Applied]) -> None:
        jobs: dict[str, Job] = {}
        evts: list[JobEvent] = []
        for o in outcomes:
            if o.job is None or o.status == "stale":
                continue
            if o.milestone or o.status == "duplicate":
                jobs[o.job.id] = o.job  # the last snapshot of a job in the batch wins
                if o.event is not None:
                    evts.append(o.event)
        if jobs:
            self._history.record(list(jobs.values()), evts)


def _outcome(source_id: str, ev: dict[str, Any], res: list[Any]) -> Applied:
    status, payload, prev_step, prev_progress, snap = res
    job = job_from_hash(pairs_to_dict(snap))
    if status == "stale" or job is None:
        return Applied("stale", None, job, False)
    if status == "duplicate":
        # Rebuilt from the source so a row lost to a crash before the SQL commit is
        # written now; if it was written, the unique (job, event) key drops it.
        event = JobEvent(
            job_id=job.id,
            event_id=source_id,
            kind=EventKind(ev["kind"]),
            state=JobState(ev.get("state") or job.state),
            progress=float(ev.get("progress", job.progress)),
            step=ev.get("step"),
            message=ev.get("message"),
            error=ev.get("error"),
            result=ev.get("result"),
            ts=float(ev.get("ts", job.updated_at)),
        )
        return Applied("duplicate", event, job, True)
    event = JobEvent.model_validate(json.loads(payload))
    milestone = (
        event.kind != EventKind.progress
        or (event.step or "") != prev_step
        or int(event.progress // 10) > int(float(prev_progress) // 10)
    )
    return Applied("applied", event, job, milestone)
