"""Accepting and cancelling jobs (the gateway's side; async).

Accepting a job appends two entries in one Redis transaction: a `created` event
for ws-relay and the job itself on its type's stream. Nothing else is written,
so state keeps a single writer. (The gateway then waits briefly until ws-relay
has applied the event, through its WebSocket hub, so that a status query right
after the 202 finds the job.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from myspinbot import keys
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState
from myspinbot.runtime.stream_trigger import JOB_STREAM_MAXLEN


@dataclass
class Reservation:
    job_id: str
    existing: bool  # True: an earlier request with the same Idempotency-Key made this job


async def reserve(
    client: aioredis.Redis, idempotency_key: str | None, job_id: str, ttl_s: int
) -> Reservation:
    if not idempotency_key:
        return Reservation(job_id, existing=False)
    key = keys.idempotency(idempotency_key)
    if await client.set(key, job_id, nx=True, ex=ttl_s):
        return Reservation(job_id, existing=False)
    return Reservation(str(await client.get(key)), existing=True)


async def release(client: aioredis.Redis, idempotency_key: str | None, job_id: str) -> None:
    """Forget a reservation whose request failed, so a retry can go through."""
    if idempotency_key:
        key = keys.idempotency(idempotency_key)
        if await client.get(key) == job_id:
            await client.delete(key)


async def enqueue(client: aioredis.Redis, job: Job) -> None:
    stream, fields = events.xadd_args(events.created(job))
    body = job.model_dump_json(include={"id", "type", "params", "created_at"})
    message: dict[Any, Any] = {"body": body, "attempt": "1"}
    pipe = client.pipeline(transaction=True)
    pipe.xadd(stream, fields, maxlen=events.EVENTS_MAXLEN, approximate=True)
    pipe.xadd(keys.job_stream(job.type), message, maxlen=JOB_STREAM_MAXLEN, approximate=True)
    await pipe.execute()


class CancelError(Exception):
    pass


async def cancel(client: aioredis.Redis, job_id: str, ttl_s: int) -> JobState:
    """Ask a job to stop. Running: its handler stops at the next progress report.
    Queued: it ends now (its message is skipped when a replica picks it up).
    """
    raw = await client.hget(keys.job(job_id), "state")
    if raw is None:
        raise KeyError(job_id)
    state = JobState(str(raw))
    if state.terminal:
        raise CancelError(f"job {job_id} already ended ({state.value}); nothing to cancel")
    await client.set(keys.job_cancel(job_id), "1", ex=ttl_s)
    if state == JobState.queued:
        ev = events.state(job_id, JobState.cancelled, message="Cancelled before it started")
        stream, fields = events.xadd_args(ev)
        await client.xadd(stream, fields, maxlen=events.EVENTS_MAXLEN, approximate=True)
    return state


def job_json(job: Job) -> str:
    return json.dumps(job.status_view())
