"""Turn a job function into a Nuclio handler.

    @job_handler(steps=[Step("prepare", 10), Step("train", 90, after=("prepare",))])
    def handler_impl(run: JobRun) -> dict:
        run.progress("prepare", 1.0, "Images ready")
        ...
        return {"profileId": ...}

    handler = handler_impl          # module-level `handler(context, event)`
    init_context = setup            # one Redis client per worker

The wrapper owns the job's lifecycle events (running, completed, cancelled,
failed for permanent errors); anything else a handler raises goes back to the
runtime, which retries it with backoff and dead-letters it in the end (the
wrapper's `on_failure` hook turns those into the job's retry and failed events).

Every event a run writes is fenced by the delivery's lease: once another replica
has taken the job over, the next write (a progress report) raises `LeaseLost`
and the run stops like a cancel; the final event and the ack are one atomic step.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from myspinbot import keys
from myspinbot.errors import JobCancelled, PermanentError
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState, stored_result
from myspinbot.jobs.progress import Step, StepPlan
from myspinbot.jobs.retries import on_failure
from myspinbot.runtime.config import ATTEMPT_HEADER, LEASE_HEADER
from myspinbot.runtime.lease import Lease, LeaseLost, Writes, settle
from myspinbot.settings import get_settings

# Progress events are throttled per job; a step change or a finished step always goes out.
MIN_REPORT_INTERVAL_S = 0.05


def setup(context: Any) -> None:
    """`init_context` for job functions: a Redis client per worker."""
    settings = get_settings()
    context.user_data.redis = redis.Redis.from_url(
        settings.require_redis_url(), decode_responses=True
    )


@dataclass
class JobRun:
    """What a job function sees: its job, and a way to report progress."""

    job: Job
    attempt: int
    plan: StepPlan
    redis: redis.Redis
    logger: Any = None
    context: Any = None  # the worker's nuclio Context: what init_context put in user_data
    lease: Lease | None = None  # None: not run by the stream trigger (nothing to fence)
    _last_report: float = field(default=0.0)
    _last_step: str | None = field(default=None)

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def cancel_requested(self) -> bool:
        return bool(self.redis.exists(keys.job_cancel(self.job.id)))

    def progress(
        self,
        step: str,
        fraction: float = 0.0,
        message: str | None = None,
        *,
        eta_seconds: float | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Report progress within `step`; raises JobCancelled if the job was cancelled.

        Every report is a cancellation point, so a handler that reports often
        stops promptly when asked to. `eta_seconds` overrides the plan's linear
        estimate when the step knows better (a trainer knows its it/s).
        """
        percent = self.plan.update(step, fraction)
        now = time.monotonic()
        if (
            step == self._last_step
            and fraction < 1.0
            and now - self._last_report < MIN_REPORT_INTERVAL_S
        ):
            return
        self._last_report, self._last_step = now, step
        event = events.progress(
            self.job.id,
            percent,
            step=step,
            message=message or self.plan.title(step),
            eta_seconds=eta_seconds if eta_seconds is not None else self.plan.eta_seconds(),
            metrics=metrics,
        )
        # One round trip: the report goes out (if the lease holds), the cancel flag comes back.
        cancelled = self._emit(event, check_cancel=True)
        if cancelled:
            raise JobCancelled(f"cancelled during {step}")

    def _emit(
        self, event: dict[str, Any], *, check_cancel: bool = False, final: bool = False
    ) -> bool:
        """Append `event` while this run still holds the job; a final event also acks the
        delivery in the same step. Returns the cancel flag when asked for it."""
        stream, fields = events.xadd_args(event)
        cancel_key = keys.job_cancel(self.job.id)
        if self.lease is None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(stream, fields)
            pipe.exists(cancel_key)
            return bool(pipe.execute()[1])
        writes = Writes(
            append=[(stream, fields)], ack=final, check=[cancel_key] if check_cancel else []
        )
        res = settle(self.redis, self.lease, writes)
        if not res.held:
            raise LeaseLost(f"job {self.job.id} was taken over by another replica")
        return bool(res.exists and res.exists[0])


JobFunction = Callable[[JobRun], dict[str, Any] | None]


def parse_job(body: Any) -> Job:
    """The job a stream message carries (Nuclio hands JSON bodies over as dicts)."""
    if isinstance(body, bytes | bytearray):
        body = body.decode()
    if isinstance(body, str):
        body = json.loads(body)
    if not isinstance(body, dict):
        raise PermanentError("job message body is not a JSON object")
    return Job.model_validate(body)


def job_handler(steps: Sequence[Step]) -> Callable[[JobFunction], Callable[[Any, Any], Any]]:
    def wrap(fn: JobFunction) -> Callable[[Any, Any], Any]:
        @functools.wraps(fn)
        def handler(context: Any, event: Any) -> Any:
            job = parse_job(event.body)
            headers = event.headers or {}
            # A retried job starts at a higher attempt; the runtime counts its own deliveries.
            attempt = job.attempt + int(headers.get(ATTEMPT_HEADER, 1)) - 1
            lease = Lease.from_header(headers[LEASE_HEADER]) if LEASE_HEADER in headers else None
            run = JobRun(
                job=job,
                attempt=attempt,
                plan=StepPlan(list(steps)),
                redis=context.user_data.redis,
                logger=context.logger,
                context=context,
                lease=lease,
            )
            return _run_job(run, fn, context)

        # The runtime calls this when it retries or dead-letters a job's message.
        handler.on_failure = on_failure  # type: ignore[attr-defined]
        return handler

    return wrap


def _run_job(run: JobRun, fn: JobFunction, context: Any) -> dict[str, Any]:
    job_id = run.job.id
    pipe = run.redis.pipeline(transaction=False)
    pipe.hmget(keys.job(job_id), ["state", "attempt"])
    pipe.exists(keys.job_cancel(job_id))
    (raw_state, raw_attempt), cancel_requested = pipe.execute()
    live = JobState(str(raw_state)) if raw_state else None
    # A retry of a failed job starts above the attempt that ended it (run.job.attempt).
    ended_earlier = int(raw_attempt or 1) >= run.job.attempt
    if live is not None and live.terminal and ended_earlier:
        # A redelivery of a job that already ended (the ack was lost): nothing to do.
        context.logger.info_with("Skipping finished job", job_id=job_id, state=live.value)
        return {"jobId": job_id, "skipped": live.value}
    if cancel_requested:
        run._emit(
            events.state(
                job_id,
                JobState.cancelled,
                attempt=run.attempt,
                message="Cancelled before it started",
            ),
            final=True,
        )
        return {"jobId": job_id, "state": "cancelled"}

    first = run.plan.names()[0]
    run._emit(
        events.state(
            job_id,
            JobState.running,
            attempt=run.attempt,
            step=first,
            message=f"Started (attempt {run.attempt})",
        )
    )
    try:
        result = fn(run) or {}
    except JobCancelled as exc:
        run._emit(
            events.state(
                job_id,
                JobState.cancelled,
                attempt=run.attempt,
                step=run._last_step,
                message=str(exc) or "Cancelled",
            ),
            final=True,
        )
        return {"jobId": job_id, "state": "cancelled"}
    except PermanentError as exc:
        run._emit(
            events.state(
                job_id,
                JobState.failed,
                attempt=run.attempt,
                step=run._last_step,
                error=str(exc),
                message=str(exc),
            ),
            final=True,
        )
        return {"jobId": job_id, "state": "failed"}
    run._emit(
        events.state(
            job_id,
            JobState.completed,
            attempt=run.attempt,
            step=run.plan.names()[-1],
            message="Done",
            # Keys only: a signed link stored with the result would outlive its use.
            result=stored_result(result),
        ),
        final=True,
    )
    return {"jobId": job_id, "state": "completed"}
