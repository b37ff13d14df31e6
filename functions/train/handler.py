"""train: builds an identity profile (LoRA + voice profile) from photos and a voice clip.

The work is in `myspinbot.training.pipeline`; this handler only wires it to the
function's context.
"""

from __future__ import annotations

from typing import Any

from myspinbot.db import JobHistory
from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.runtime.hosting import join, stream_only
from myspinbot.settings import get_settings
from myspinbot.storage import ArtifactStore
from myspinbot.training.pipeline import STEPS, TrainDeps, run_training, unavailable_reason


def init_context(context: Any) -> None:
    setup(context)
    settings = get_settings()
    context.user_data.deps = TrainDeps(
        store=ArtifactStore.from_settings(settings),
        history=JobHistory(settings.sqlalchemy_url),
        settings=settings,
        redis=context.user_data.redis,
    )
    note = unavailable_reason(settings)
    context.user_data.capabilities = {
        "train": {
            "available": True,
            "baseModel": settings.base_model or "tiny",
            "placeholderModel": note is not None,
            **({"note": note} if note else {}),
        }
    }
    join(context, handler)  # under Nuclio: run the stream consumer and register, here


@stream_only
@job_handler(steps=STEPS)
def handler(run: JobRun) -> dict[str, Any]:
    return run_training(run, run.context.user_data.deps)
