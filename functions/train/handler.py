"""train: builds an identity profile from the uploaded photos and voice clip.

The training pipeline itself (dataset preparation, LoRA training, voice profile)
is not in this build yet. Until it is, the function says so: it advertises the
capability as unavailable and ends each job `failed` with that explanation,
instead of leaving jobs queued forever or pretending to train.
"""

from __future__ import annotations

from typing import Any

from myspinbot.errors import PermanentError
from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.jobs.progress import Step

UNAVAILABLE = "Profile training is not available in this version of MySpinBot yet."


def init_context(context: Any) -> None:
    setup(context)
    context.user_data.capabilities = {"train": {"available": False, "reason": UNAVAILABLE}}


@job_handler(steps=[Step("prepare", 10, title="Preparing photos")])
def handler(run: JobRun) -> dict[str, Any]:
    raise PermanentError(UNAVAILABLE)
