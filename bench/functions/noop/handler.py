"""Benchmark no-op job: one step, no work; the wrapper reports running and completed."""

from __future__ import annotations

from typing import Any

from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.jobs.progress import Step


def init_context(context: Any) -> None:
    setup(context)
    context.user_data.capabilities = {"generate": {"available": True, "modes": ["direct"]}}


@job_handler(steps=[Step("noop", 1, title="Doing nothing")])
def handler(run: JobRun) -> dict[str, Any]:
    return {}
