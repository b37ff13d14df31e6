"""generate: turns a topic or a script into a narrated talking-avatar MP4.

The work is in `myspinbot.generation.pipeline`; this handler wires it to the function's
context and publishes what this replica can do (which modes and portraits are available).
"""

from __future__ import annotations

from typing import Any

from myspinbot.db import JobHistory
from myspinbot.generation.pipeline import STEPS, GenerateDeps, default_portrait, run_generation
from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.script import guided_status
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
    guided, reason = guided_status(settings)
    render = {"available": True}
    if not settings.triton_url:
        render = {"available": False, "reason": "No Triton server is configured."}
    context.user_data.capabilities = {
        "generate": {
            "available": True,
            "modes": {
                "direct": {"available": True},
                "guided": {"available": guided, **({"reason": reason} if reason else {})},
            },
            "portraits": {
                "photo": {"available": True},
                "upload": {"available": True},
                "render": render,
            },
            "defaultPortrait": default_portrait(settings),
            "narrationMaxSeconds": settings.narration_max_seconds,
        }
    }


@job_handler(steps=STEPS)
def handler(run: JobRun) -> dict[str, Any]:
    return run_generation(run, run.context.user_data.deps)
