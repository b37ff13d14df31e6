"""generate: turns a topic or a script into a narrated talking-avatar MP4.

The work is in `myspinbot.generation.pipeline`; this handler wires it to the function's
context and publishes what this replica can do (which modes and portraits are available).
"""

from __future__ import annotations

from typing import Any

from myspinbot.db import JobHistory
from myspinbot.generation.capabilities import generate_capabilities, keep_fresh
from myspinbot.generation.pipeline import STEPS, GenerateDeps, run_generation
from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.runtime.hosting import is_first_worker, join, stream_only
from myspinbot.settings import get_settings
from myspinbot.storage import ArtifactStore


def init_context(context: Any) -> None:
    setup(context)
    settings = get_settings()
    context.user_data.deps = GenerateDeps(
        store=ArtifactStore.from_settings(settings),
        history=JobHistory(settings.sqlalchemy_url),
        settings=settings,
        redis=context.user_data.redis,
    )
    context.user_data.capabilities = generate_capabilities(settings)
    speech = context.user_data.capabilities["generate"]["speech"]
    if not speech["available"]:
        # Said at start-up, in the log and in /api/capabilities, rather than by a failed job;
        # the replica still serves uploaded narrations.
        context.logger.error(f"speech synthesis is unavailable: {speech['reason']}")
    # The replica publishes the first worker's capabilities; one refresher is enough.
    if is_first_worker(context):  # "0" under either runner (a string, as Nuclio passes it)
        keep_fresh(context.user_data, settings)
    join(context, handler)  # under Nuclio: run the stream consumer and register, here


@stream_only
@job_handler(steps=STEPS)
def handler(run: JobRun) -> dict[str, Any]:
    return run_generation(run, run.context.user_data.deps)
