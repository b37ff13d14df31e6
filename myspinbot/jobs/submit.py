"""Accepting, cancelling and retrying jobs (the gateway's side; async).

Accepting a job is one atomic Lua step (submit.lua) that runs after the job's
inputs are stored: it binds the Idempotency-Key to the job and a hash of the
request, refuses when the backlog is full, and appends a `created` event for
ws-relay and the job itself on its type's stream. Nothing else is written, so
state keeps a single writer. Inputs stored for a submit that then never queued
are deleted at once, or by the sweeper (jobs/repair.py) when the gateway died
in between.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from myspinbot import keys
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState
from myspinbot.lua import lua

Outcome = Literal["queued", "existing", "conflict", "busy", "user_busy"]
# Which per-user limit a refused submit met: jobs waiting to start, or unfinished jobs.
UserLimit = Literal["queued", "active"]


@dataclass(frozen=True)
class Accepted:
    outcome: Outcome
    job_id: str  # the job queued now, or the one the Idempotency-Key already names
    depth: int = 0  # backlog depth when busy; the member's count of `limit` when user_busy
    limit: UserLimit | None = None  # when user_busy


@dataclass(frozen=True)
class UserLimits:
    """A member's own limits (settings user_max_queued / user_max_active), checked in the
    same atomic step that queues the job. `grace_s`: a job whose hash is gone after this
    long is a finished one whose hash expired (the finished-job TTL)."""

    user_id: str
    max_queued: int
    max_active: int
    grace_s: float

    def keys(self) -> list[str]:
        return [keys.user_jobs(self.user_id)]

    def args(self) -> list[Any]:
        return [self.max_queued, self.max_active, time.time(), keys.job(""), self.grace_s]


def _user_busy(res: list[Any], job_id: str) -> Accepted:
    limit: UserLimit = "queued" if str(res[1]) == "queued" else "active"
    return Accepted("user_busy", job_id, int(res[2]), limit)


def request_hash(request: Any) -> str:
    """Fingerprint of a request: the same Idempotency-Key must come with the same body."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_message(job: Job, first_attempt: int = 1) -> str:
    """The message on the job stream. `attempt` is the job's attempt number at its first
    delivery (above 1 for a retried job); the runtime adds its own retries to it."""
    body = job.model_dump(mode="json", include={"id", "type", "owner", "params", "created_at"})
    if first_attempt > 1:
        body["attempt"] = first_attempt
    return json.dumps(body, separators=(",", ":"))


async def inputs_pending(client: aioredis.Redis, job_id: str) -> None:
    """Note, before storing inputs, that a submit is under way (see keys.SUBMITS_PENDING)."""
    await client.zadd(keys.SUBMITS_PENDING, {job_id: time.time()})


async def inputs_abandoned(client: aioredis.Redis, job_id: str) -> None:
    """The inputs of `job_id` were deleted: nothing is pending for it any more."""
    await client.zrem(keys.SUBMITS_PENDING, job_id)


async def accept(
    client: aioredis.Redis,
    job: Job,
    *,
    idempotency_key: str | None,
    fingerprint: str,
    key_ttl_s: int,
    backlog_max: int,
    limits: UserLimits | None = None,
) -> Accepted:
    """Queue `job` unless the backlog is full or its member is over a limit (`limits`;
    None: not limited, e.g. an admin)."""
    script = client.register_script(_script("submit"))
    _, fields = events.xadd_args(events.created(job))
    res = await script(
        keys=[
            keys.idempotency(idempotency_key, job.owner) if idempotency_key else "",
            keys.EVENTS,
            keys.job_stream(job.type),
            keys.SUBMITS_PENDING,
            *(limits.keys() if limits else [""]),
        ],
        args=[
            job.id,
            fingerprint,
            key_ttl_s,
            fields["body"],
            job_message(job),
            backlog_max,
            *(limits.args() if limits else []),
        ],
    )
    outcome, value = str(res[0]), str(res[1])
    if outcome == "busy":
        return Accepted("busy", job.id, int(value))
    if outcome == "user_busy":
        return _user_busy(res, job.id)
    return Accepted(outcome, value)  # type: ignore[arg-type]


def _script(section: str) -> str:
    # The per-user limit functions are shared by the submit and retry sections.
    return lua("myspinbot.jobs", "submit.lua", "user_load") + lua(
        "myspinbot.jobs", "submit.lua", section
    )


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
        await client.xadd(stream, fields)
    return state


# --- the dead letter ----------------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetter:
    id: str  # entry id in the dead-letter stream
    stream: str
    job_id: str | None
    job_type: str | None
    error: str
    attempt: int
    function: str
    failed_at: float
    owner: str | None = None  # the job's owner, from the job message

    def view(self) -> dict[str, Any]:
        return {
            "deadLetterId": self.id,
            "stream": self.stream,
            "jobId": self.job_id,
            "type": self.job_type,
            "error": self.error,
            "attempt": self.attempt,
            "function": self.function,
            "failedAt": self.failed_at,
            "owner": self.owner,
        }


def _dead_letter(stream: str, entry_id: str, fields: dict[str, str]) -> DeadLetter:
    try:
        body = json.loads(fields.get("body", ""))
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return DeadLetter(
        id=entry_id,
        stream=stream,
        job_id=body.get("id") or body.get("jobId"),
        job_type=body.get("type"),
        error=fields.get("error", ""),
        attempt=int(fields.get("attempt", 0) or 0),
        function=fields.get("function", ""),
        failed_at=float(fields.get("failed_at", 0) or 0),
        owner=body.get("owner"),
    )


async def dead_letters(
    client: aioredis.Redis, limit: int, owner: str | None = None
) -> list[DeadLetter]:
    """Dead letters of every job stream and of the events stream, newest first (`owner`:
    only those of that user's jobs; the whole dead letter is read then, as it is short)."""
    out: list[DeadLetter] = []
    for stream in [keys.job_stream(t) for t in keys.JOB_TYPES] + [keys.EVENTS]:
        dead = keys.dead_letter(stream)
        entries: Any = await client.xrevrange(dead, count=limit if owner is None else None)
        for entry_id, fields in entries:
            letter = _dead_letter(dead, entry_id, fields)
            if owner is None or letter.owner == owner:
                out.append(letter)
    out.sort(key=lambda d: d.failed_at, reverse=True)
    return out[:limit]


class RetryError(Exception):
    pass


class UserBusy(Exception):
    """A retry refused by the member's own limits."""

    def __init__(self, refused: Accepted) -> None:
        super().__init__(refused.limit)
        self.refused = refused


async def retry(client: aioredis.Redis, job: Job, limits: UserLimits | None = None) -> int:
    """Queue failed `job` again with its stored inputs; returns the new attempt number.
    A retry counts against the member's limits like a new job (UserBusy)."""
    if job.state != JobState.failed:
        raise RetryError(f"job {job.id} is {job.state.value}; only failed jobs can be retried")
    dead = keys.dead_letter(keys.job_stream(job.type))
    entry = ""
    entries: Any = await client.xrange(dead)
    for entry_id, fields in entries:
        if _dead_letter(dead, entry_id, fields).job_id == job.id:
            entry = entry_id
    attempt = job.attempt + 1
    created = events.created(job)
    created.update(attempt=attempt, message=f"Retried by request (attempt {attempt})")
    script = client.register_script(_script("retry"))
    res = await script(
        keys=[
            keys.job(job.id),
            keys.EVENTS,
            keys.job_stream(job.type),
            dead,
            *(limits.keys() if limits else [""]),
        ],
        args=[
            json.dumps(created, separators=(",", ":")),
            job_message(job, attempt),
            entry,
            *(limits.args() if limits else []),
        ],
    )
    if str(res[0]) == "user_busy":
        raise UserBusy(_user_busy(res, job.id))
    if str(res[0]) != "queued":
        raise RetryError(f"job {job.id} is {res[1]}; only failed jobs can be retried")
    return attempt


def job_json(job: Job) -> str:
    return json.dumps(job.status_view())
