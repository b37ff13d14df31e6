"""generate: turns a topic or a script into a narrated talking-avatar video.

The video pipeline (script, speech, portrait, animation, encode) is not in this
build yet. Until it is, the function says so: it advertises the capability as
unavailable and ends each job `failed` with that explanation.
"""

from __future__ import annotations

from typing import Any

from myspinbot.errors import PermanentError
from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.jobs.progress import Step

UNAVAILABLE = "Video generation is not available in this version of MySpinBot yet."


def init_context(context: Any) -> None:
    setup(context)
    context.user_data.capabilities = {
        "generate": {"available": False, "reason": UNAVAILABLE, "modes": []}
    }


@job_handler(steps=[Step("script", 5, title="Writing the script")])
def handler(run: JobRun) -> dict[str, Any]:
    raise PermanentError(UNAVAILABLE)
