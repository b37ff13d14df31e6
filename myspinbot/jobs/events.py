"""Job events as they travel on the global events stream.

Producers (the gateway on submit, the function runtime and handlers while a job
runs) only append events; ws-relay applies them. Keeping producers append-only
is what lets state have one writer and a crash anywhere lose nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from myspinbot import keys
from myspinbot.jobs.models import EventKind, Job, JobState


def created(job: Job) -> dict[str, Any]:
    return {
        "kind": EventKind.created.value,
        "jobId": job.id,
        "type": job.type,
        "owner": job.owner,
        "params": job.params,
        "createdAt": job.created_at,
        "ts": time.time(),
    }


def state(
    job_id: str,
    new_state: JobState,
    *,
    attempt: int = 1,
    step: str | None = None,
    message: str | None = None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return _drop_none(
        {
            "kind": EventKind.state.value,
            "jobId": job_id,
            "state": new_state.value,
            "attempt": attempt,
            "step": step,
            "message": message,
            "result": result,
            "error": error,
            "ts": time.time(),
        }
    )


def progress(
    job_id: str,
    percent: float,
    *,
    step: str | None,
    message: str | None,
    eta_seconds: float | None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return _drop_none(
        {
            "kind": EventKind.progress.value,
            "metrics": metrics,
            "jobId": job_id,
            "progress": round(percent, 3),
            "step": step,
            "message": message,
            "etaSeconds": None if eta_seconds is None else round(eta_seconds, 1),
            "ts": time.time(),
        }
    )


def xadd_args(event: dict[str, Any]) -> tuple[str, dict[Any, Any]]:
    """Stream key and fields for appending `event`."""
    return keys.EVENTS, {"body": json.dumps(event, separators=(",", ":"))}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
