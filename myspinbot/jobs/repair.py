"""Repairs ws-relay runs: reconcile Redis and SQL on start; sweep abandoned submits.

Redis and SQL can disagree after a crash: SQL missed writes (it was away, and
the outbox was lost with Redis), or Redis lost jobs SQL knows (a Redis crash
before its last fsync). On start, before any event is applied:

- every job Redis holds is upserted into SQL (an upsert never moves SQL back);
- every unfinished job whose message is nowhere (not on its stream, not waiting
  out a retry, no event about it waiting to be applied) is queued again, with a
  message saying why; a job Redis lost entirely is recreated from SQL first.
  A job that cannot be queued again is failed with the reason. No job stays
  `queued` with nothing that will ever run it.

The sweeper deletes the inputs of submits that stored them but never queued
(the gateway died in between), once they are older than a grace period.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from myspinbot import keys
from myspinbot.db import JobHistory
from myspinbot.jobs import events
from myspinbot.jobs.livestate import job_from_hash
from myspinbot.jobs.models import Job, JobState
from myspinbot.jobs.relay import HistoryWriter, Relay
from myspinbot.jobs.submit import job_message
from myspinbot.storage import ArtifactStore

log = logging.getLogger(__name__)
SCAN_BATCH = 500


@dataclass
class Repaired:
    synced_to_sql: int = 0
    restored: list[str] = field(default_factory=list)  # recreated in Redis from SQL
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _live_jobs(client: redis.Redis) -> Iterable[Job]:
    prefix = keys.job("")
    batch: list[str] = []

    def flush() -> list[Job]:
        pipe = client.pipeline(transaction=False)
        for k in batch:
            pipe.hgetall(k)
        out = [job_from_hash(h) for h in pipe.execute()]
        batch.clear()
        return [j for j in out if j is not None]

    for key in client.scan_iter(match=prefix + "*", count=SCAN_BATCH, _type="hash"):
        batch.append(str(key))
        if len(batch) >= SCAN_BATCH:
            yield from flush()
    if batch:
        yield from flush()


def _in_flight(client: redis.Redis) -> set[str]:
    """Job ids something will still act on: a message on a job stream (undelivered,
    pending, or acked but not trimmed yet), a retry waiting out its backoff, or an
    event not applied yet."""
    ids: set[str] = set()
    for job_type in keys.JOB_TYPES:
        stream = keys.job_stream(job_type)
        entries: Any = client.xrange(stream)
        for _, fields in entries:
            ids.add(_id_in(fields.get("body", "")))
        delayed: Any = client.zrange(keys.delayed(stream), 0, -1)
        for member in delayed:
            ids.add(_id_in(json.loads(member).get("body", "")))
    pending_events: Any = client.xrange(keys.EVENTS)
    for _, fields in pending_events:
        ids.add(_id_in(fields.get("body", ""), "jobId"))
    ids.discard("")
    return ids


def _id_in(body: str, field_name: str = "id") -> str:
    try:
        value = json.loads(body).get(field_name)
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def reconcile(
    client: redis.Redis, history: JobHistory, writer: HistoryWriter, job_ttl_s: float
) -> Repaired:
    """Run while no events are applied (ws-relay's start, or under `Relay.lock`): only then
    does a job missing from everything in flight stay missing."""
    out = Repaired()
    # What is in flight first: a job that finishes meanwhile is either still in flight
    # here or already terminal in the live state read next.
    in_flight = _in_flight(client)
    live: dict[str, Job] = {}
    for job in _live_jobs(client):
        live[job.id] = job
    for i in range(0, len(live), SCAN_BATCH):
        chunk = list(live.values())[i : i + SCAN_BATCH]
        writer.write(chunk, [])
        out.synced_to_sql += len(chunk)
    unfinished = {j.id: j for j in live.values() if not j.state.terminal}
    try:
        from_sql = history.unfinished_jobs()
    except SQLAlchemyError as exc:  # SQL away: repair what Redis knows; the rest next start
        log.warning("Could not read unfinished jobs from SQL: %s", exc)
        from_sql = []
    for job in from_sql:
        if job.id not in live:
            unfinished[job.id] = job
    for job in unfinished.values():
        if job.id in in_flight:
            if job.id not in live:
                _restore(client, job, "Restored from the history after Redis lost it")
                out.restored.append(job.id)
            continue
        reason = None
        if job.type not in keys.JOB_TYPES:
            reason = f"cannot be queued again: unknown job type {job.type!r}"
        elif job.id not in live and job.updated_at < time.time() - job_ttl_s:
            # Finished jobs leave Redis after the TTL; one this old whose end SQL never
            # heard of is not worth running again (an older version could lose that write).
            reason = "its final state was never recorded; it is too old to run again"
        if reason is not None:
            if job.id not in live:
                _restore(client, job, reason)
            _fail(client, job, reason)
            out.failed.append(job.id)
            continue
        _requeue(client, job, in_redis=job.id in live)
        out.requeued.append(job.id)
    if out.requeued or out.restored or out.failed:
        log.warning(
            "Repaired jobs: %d re-queued, %d restored, %d failed",
            len(out.requeued),
            len(out.restored),
            len(out.failed),
        )
    return out


def _restore(client: redis.Redis, job: Job, message: str, attempt: int | None = None) -> None:
    created = events.created(job)
    created.update(attempt=attempt or job.attempt, message=message)
    client.xadd(keys.EVENTS, {"body": json.dumps(created, separators=(",", ":"))})


def _requeue(client: redis.Redis, job: Job, *, in_redis: bool) -> None:
    # A job that was running starts a new attempt; a queued one keeps its number.
    attempt = job.attempt + (1 if job.state == JobState.running else 0)
    why = "Queued again: its message was lost (the platform recovered it on restart)"
    pipe = client.pipeline(transaction=True)
    if in_redis:
        ev = events.state(job.id, JobState.queued, attempt=attempt, message=why)
        pipe.xadd(*events.xadd_args(ev))
    else:
        created = events.created(job)
        created.update(attempt=attempt, message=why)
        pipe.xadd(keys.EVENTS, {"body": json.dumps(created, separators=(",", ":"))})
    pipe.xadd(keys.job_stream(job.type), {"body": job_message(job, attempt), "attempt": "1"})
    pipe.execute()


def _fail(client: redis.Redis, job: Job, reason: str) -> None:
    ev = events.state(job.id, JobState.failed, attempt=job.attempt, error=reason, message=reason)
    client.xadd(*events.xadd_args(ev))


class RedisRestartWatch:
    """Reconciles again whenever Redis comes back as a new process (its run_id changes)
    or without the marker this watch left (it lost its data), with the relay paused."""

    def __init__(self, client: redis.Redis, relay: Relay, job_ttl_s: float, every_s: float = 2.0):
        self._client, self._relay, self._ttl = client, relay, job_ttl_s
        self._every_s = every_s
        self._run_id = self._mark()
        self._stop = threading.Event()
        self.repairs = 0
        self._thread = threading.Thread(target=self._loop, name="redis-watch", daemon=True)
        self._thread.start()

    def _mark(self) -> str:
        self._client.set(keys.RELAY_MARKER, "1")
        return str(self._client.info("server")["run_id"])

    def check(self) -> bool:
        """Reconcile if Redis restarted or lost its data since the last check."""
        run_id = str(self._client.info("server")["run_id"])
        if run_id == self._run_id and self._client.exists(keys.RELAY_MARKER):
            return False
        with self._relay.lock:
            reconcile(self._client, self._relay.history, self._relay.writer, self._ttl)
            self._run_id = self._mark()
        self.repairs += 1
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.check()
            except (redis.RedisError, SQLAlchemyError) as exc:  # still away: next round
                log.warning("Redis restart watch: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- the sweeper ---------------------------------------------------------------------------
def sweep_abandoned_inputs(client: redis.Redis, store: ArtifactStore, grace_s: float) -> list[str]:
    """Delete the inputs of submits that stored them and never queued; their job ids."""
    stale = [
        str(j) for j in client.zrangebyscore(keys.SUBMITS_PENDING, "-inf", time.time() - grace_s)
    ]
    for job_id in stale:
        # Queueing removes the entry atomically, so a job id still here never queued.
        store.delete_prefix(f"jobs/{job_id}/inputs/")
        client.zrem(keys.SUBMITS_PENDING, job_id)
    if stale:
        log.warning("Deleted the inputs of %d submit(s) that never queued", len(stale))
    return stale


class Sweeper:
    """Runs `sweep_abandoned_inputs` every `every_s` in a daemon thread."""

    def __init__(
        self, client: redis.Redis, store: ArtifactStore, grace_s: float, every_s: float
    ) -> None:
        self._args = (client, store, grace_s)
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="input-sweeper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                sweep_abandoned_inputs(*self._args)
            except Exception as exc:  # S3 or Redis away: try again next round
                log.warning("Sweeping abandoned inputs failed: %s", exc)
            if self._stop.wait(self._every_s):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
