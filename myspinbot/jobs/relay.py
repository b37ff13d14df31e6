"""ws-relay's work: apply job events to live state (Redis) and history (SQL).

This is the one writer of job state. Each batch of events from the global
events stream is applied with one pipelined round-trip of `apply.lua` (atomic
and idempotent per event); then the job snapshots and the events worth keeping
go to SQL in one transaction, as an upsert of each job's snapshot, so SQL
converges on what Redis holds whatever was missed before.

Nothing is dropped on the way to SQL. When SQL is away, the batch's writes go to
an outbox in Redis (keys.HISTORY_OUTBOX) and live state keeps moving; a drainer
retries the outbox, in order, with backoff, for as long as it takes
(`myspinbot_relay_sql_failures_total`, `myspinbot_relay_sql_backlog`). A crash
between Redis and SQL is harmless too: the redelivered batch is recognised as
already applied in Redis and written to SQL again, where duplicates are ignored.
Only an event that was applied counts as a duplicate: one that arrives after newer
events of its job without ever having been applied is stale, and stays out of the
history, whose last state must be the job's final one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from myspinbot import keys, metrics
from myspinbot.db import JobHistory
from myspinbot.jobs.livestate import job_from_hash, pairs_to_dict
from myspinbot.jobs.models import EventKind, Job, JobEvent
from myspinbot.lua import lua
from myspinbot.settings import Settings

log = logging.getLogger(__name__)

SQL_FAILURES = Counter(
    "myspinbot_relay_sql_failures",
    "Failed attempts to write job history to SQL (retried until they succeed).",
)
SQL_BACKLOG = Gauge(
    "myspinbot_relay_sql_backlog",
    "Batches of job history waiting in the outbox for SQL to come back.",
)
REDIS_FAILURES = Counter(
    "myspinbot_relay_redis_failures",
    "Failed attempts to apply events to Redis (retried until they succeed).",
)
RETRY_BASE_S = 0.25
OUTBOX_BATCH = 50


@dataclass
class Applied:
    status: str  # applied | duplicate | stale
    event: JobEvent | None
    job: Job | None
    milestone: bool


def backoff(failures: int, max_s: float) -> float:
    return float(min(RETRY_BASE_S * 2 ** max(failures - 1, 0), max_s))


class HistoryWriter:
    """SQL writes in order; through the outbox while SQL is away."""

    def __init__(self, client: redis.Redis, history: JobHistory, retry_max_s: float) -> None:
        self._redis = client
        self._history = history
        self._retry_max_s = retry_max_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._outbox_used = bool(client.xlen(keys.HISTORY_OUTBOX))
        self._thread = threading.Thread(target=self._drain_loop, name="history-drain", daemon=True)
        self._thread.start()

    def write(self, jobs: Sequence[Job], events: Sequence[JobEvent]) -> None:
        if not jobs and not events:
            return
        with self._lock:
            # Later writes queue behind earlier ones so SQL sees them in order.
            if not self._outbox_used:
                try:
                    self._history.record(jobs, events)
                    return
                except SQLAlchemyError as exc:
                    SQL_FAILURES.inc()
                    log.warning("SQL write failed; keeping it in the outbox: %s", exc)
            self._redis.xadd(keys.HISTORY_OUTBOX, {"batch": _pack(jobs, events)})
            self._outbox_used = True
            SQL_BACKLOG.set(self._redis.xlen(keys.HISTORY_OUTBOX))
        self._wake.set()

    def drain_once(self) -> bool:
        """Write the oldest outbox batches to SQL; True when the outbox is empty."""
        with self._lock:
            entries: Any = self._redis.xrange(keys.HISTORY_OUTBOX, count=OUTBOX_BATCH)
            if not entries:
                self._outbox_used = False
                SQL_BACKLOG.set(0)
                return True
        jobs: list[Job] = []
        evts: list[JobEvent] = []
        for _, fields in entries:
            j, e = _unpack(fields["batch"])
            jobs += j
            evts += e
        self._history.record(jobs, evts)  # raises while SQL is away
        self._redis.xdel(keys.HISTORY_OUTBOX, *[eid for eid, _ in entries])
        SQL_BACKLOG.set(self._redis.xlen(keys.HISTORY_OUTBOX))
        return False

    def _drain_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if not self._outbox_used:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self.drain_once()
                failures = 0
            except (SQLAlchemyError, redis.RedisError) as exc:
                failures += 1
                if isinstance(exc, SQLAlchemyError):
                    SQL_FAILURES.inc()
                log.warning("History outbox: SQL still failing (%d): %s", failures, exc)
                self._stop.wait(backoff(failures, self._retry_max_s))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)


def _pack(jobs: Sequence[Job], events: Sequence[JobEvent]) -> str:
    return json.dumps(
        {
            "jobs": [j.model_dump(mode="json") for j in jobs],
            "events": [e.model_dump(mode="json") for e in events],
        },
        separators=(",", ":"),
    )


def _unpack(raw: str) -> tuple[list[Job], list[JobEvent]]:
    data = json.loads(raw)
    return (
        [Job.model_validate(j) for j in data["jobs"]],
        [JobEvent.model_validate(e) for e in data["events"]],
    )


class Relay:
    def __init__(
        self,
        client: redis.Redis,
        history: JobHistory,
        settings: Settings,
        writer: HistoryWriter | None = None,
    ) -> None:
        self._redis = client
        self.history = history
        self._settings = settings
        self._apply = client.register_script(lua("myspinbot.jobs", "apply.lua"))
        self.writer = writer or HistoryWriter(client, history, settings.history_retry_max_s)
        self._stop = threading.Event()
        # Held while a batch is applied; a repair holds it to see state stand still.
        self.lock = threading.Lock()

    def close(self) -> None:
        self._stop.set()
        self.writer.close()

    def apply(self, batch: list[tuple[str, dict[str, Any]]]) -> list[Applied]:
        """Apply (source id, event) pairs, in order; returns what became of each.

        Redis errors are retried here, with backoff, rather than handed to the
        runtime: a retried event would come back under a new stream id, behind
        later events of its job. Events that can never apply (not a job event)
        go to the events dead-letter stream.
        """
        with self.lock:
            return self._apply_batch(batch)

    def _apply_batch(self, batch: list[tuple[str, dict[str, Any]]]) -> list[Applied]:
        good = [(sid, ev) for sid, ev in batch if self._valid(sid, ev)]
        failures = 0
        while True:
            try:
                outcomes = self._apply_redis(good)
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                failures += 1
                REDIS_FAILURES.inc()
                log.warning("Applying events to Redis failed (%d): %s", failures, exc)
                if self._stop.wait(backoff(failures, self._settings.history_retry_max_s)):
                    raise
        self._record(outcomes)
        return outcomes

    def _valid(self, source_id: str, ev: Any) -> bool:
        ok = (
            isinstance(ev, dict)
            and isinstance(ev.get("jobId"), str)
            and ev.get("kind") in {k.value for k in EventKind}
        )
        if not ok:
            self._redis.xadd(
                keys.dead_letter(keys.EVENTS),
                {
                    "body": json.dumps(ev),
                    "error": "not a job event (needs jobId and a known kind)",
                    "source_id": source_id,
                    "function": "ws-relay",
                    "attempt": "1",
                },
            )
        return ok

    def _apply_redis(self, batch: list[tuple[str, dict[str, Any]]]) -> list[Applied]:
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
                    keys.FANOUT_MAXLEN,
                    self._settings.job_ttl_s,
                    metrics.job_duration_buckets_json(),
                ],
                client=pipe,
            )
        return [_outcome(res) for res in pipe.execute()]

    def _record(self, outcomes: list[Applied]) -> None:
        jobs: dict[str, Job] = {}
        evts: list[JobEvent] = []
        for o in outcomes:
            if o.job is None:
                continue
            # Every job touched gets its current snapshot upserted (also for a stale or
            # duplicate event: SQL may have missed the write that made it so).
            if o.milestone or o.status != "applied":
                jobs[o.job.id] = o.job  # the last snapshot of a job in the batch wins
            if o.event is not None and (o.milestone or o.status == "duplicate"):
                evts.append(o.event)
        self.writer.write(list(jobs.values()), evts)


def _outcome(res: list[Any]) -> Applied:
    status, payload, prev_step, prev_progress, snap = res
    try:
        job = job_from_hash(pairs_to_dict(snap))
    except ValidationError:
        job = None  # a hash without a valid job (its `created` was lost): nothing to record
    if status == "stale" or job is None:
        return Applied("stale", None, job, False)
    event = JobEvent.model_validate(json.loads(payload))
    if status == "duplicate":
        # Applied before (apply.lua found it on the job's stream and hands back what it
        # applied): written again so a row lost to a crash before the SQL commit is
        # written now; if it was written, the unique (job, event) key drops it.
        return Applied("duplicate", event, job, True)
    milestone = (
        event.kind != EventKind.progress
        or (event.step or "") != prev_step
        or int(event.progress // 10) > int(float(prev_progress) // 10)
    )
    return Applied("applied", event, job, milestone)
