"""What a job's retry and dead letter mean for the job: its `queued` and `failed` events.

The runtime's stream trigger retries and dead-letters messages without knowing
what they carry; job functions hand it this hook (through `job_handler`), and the
events it returns are appended in the same atomic step as the retry or dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from myspinbot.jobs import events
from myspinbot.jobs.models import JobState
from myspinbot.runtime.stream_trigger import Message


def _job_of(body: str) -> tuple[str, int] | None:
    """The job id and first attempt number a job message carries."""
    try:
        data = json.loads(body)
        job_id, first = data.get("id"), int(data.get("attempt", 1))
    except (ValueError, AttributeError, TypeError):
        return None
    return (job_id, first) if isinstance(job_id, str) else None


def on_failure(
    message: Message, attempt: int, error: str, retry_in: float | None
) -> list[tuple[str, Mapping[str, Any]]]:
    """The job event for a failed attempt: `queued` for a retry, `failed` at the end."""
    job = _job_of(message.body)
    if job is None:
        return []
    job_id, first = job
    attempt += first - 1  # the job's attempt number (a retried job started above 1)
    if retry_in is None:
        ev = events.state(
            job_id,
            JobState.failed,
            attempt=attempt,
            error=error,
            message=f"Failed after {attempt} attempt(s): {error}",
        )
    else:
        ev = events.state(
            job_id,
            JobState.queued,
            attempt=attempt + 1,
            message=f"Attempt {attempt} failed ({error}); retrying in {retry_in:.1f} s",
        )
    return [events.xadd_args(ev)]
