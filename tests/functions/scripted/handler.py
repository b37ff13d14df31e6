"""Test fixture, not product code: a job whose steps, delays and failures the
test chooses as JSON in the `stage` text of a generate request (a field the API takes as
free text; `options` is validated strictly):

    {"steps": 5, "sleep": 0.1, "fail": "always" | <n first attempts>, "hold": 6.0}

`hold` sleeps without reporting progress (to test stream ownership). Each run
is recorded in the Redis list `test:runs:<job id>` as "start|end <pid> <attempt> <time>".
A train job records a profile as the real trainer does (id = job id, owner = the job's
owner, its first photo as an artifact), without training anything.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.jobs.progress import Step
from myspinbot.runtime.hosting import join
from myspinbot.settings import get_settings


def init_context(context: Any) -> None:
    setup(context)
    context.user_data.capabilities = {
        "generate": {"available": True, "modes": ["direct"]},
        "train": {"available": True},
    }
    context.user_data.history = JobHistory(get_settings().sqlalchemy_url)
    join(context, handler)  # under Nuclio: run the stream consumers and register, here


def _record(run: JobRun, what: str) -> None:
    run.redis.rpush(f"test:runs:{run.job.id}", f"{what} {os.getpid()} {run.attempt} {time.time()}")


@job_handler(
    steps=[
        Step("warmup", 1, title="Warming up"),
        Step("work", 8, after=("warmup",), title="Working"),
        Step("finish", 1, after=("work",), title="Finishing"),
    ]
)
def handler(run: JobRun) -> dict[str, Any]:
    spec = _spec(run.params)
    _record(run, "start")
    fail = spec.get("fail")
    if fail == "always" or (isinstance(fail, int) and run.attempt <= fail):
        raise RuntimeError(f"scripted failure on attempt {run.attempt}")
    run.progress("warmup", 1.0)
    if spec.get("hold"):
        time.sleep(float(spec["hold"]))
    steps = int(spec.get("steps", 3))
    for i in range(steps):
        time.sleep(float(spec.get("sleep", 0.0)))
        run.progress("work", (i + 1) / steps, f"Working {i + 1}/{steps}")
    if run.job.type == "train":
        _save_profile(run)
    run.progress("finish", 1.0)
    _record(run, "end")
    return {"echo": spec.get("echo"), "steps": steps}


def _save_profile(run: JobRun) -> None:
    images = run.params.get("images") or []
    run.context.user_data.history.save_profile(
        ProfileRecord(
            id=run.job.id,
            name=str(run.params.get("name") or "scripted"),
            job_id=run.job.id,
            owner=run.job.owner,
            artifacts=[{"name": "photo", "key": images[0]}] if images else [],
        )
    )


def _spec(params: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = json.loads(params.get("stage") or "{}")
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}
