"""Test fixture, not product code (tests/test_durability.py).

generate: the `stage` text is JSON `{"steps": n, "sleep": s, "fail": <n first attempts>}`;
the job reports `work` progress n times, then writes its result object to S3 under
`jobs/<id>/results/` (one object per run that got that far, named by pid and attempt).
train: reads every stored photo of the job from S3 (a retried training must find them);
a profile named `fail-first-round` fails every attempt up to 2 (the trigger's
maxDeliveries), so only a retry from the dead letter completes it.
Each run is recorded in the Redis list `test:runs:<job id>` ("start|end pid attempt").
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from myspinbot.jobs.handler import JobRun, job_handler, setup
from myspinbot.jobs.progress import Step
from myspinbot.settings import get_settings
from myspinbot.storage import ArtifactStore


def init_context(context: Any) -> None:
    setup(context)
    context.user_data.store = ArtifactStore.from_settings(get_settings())
    context.user_data.capabilities = {
        "generate": {"available": True, "modes": ["direct"]},
        "train": {"available": True},
    }


def _record(run: JobRun, what: str) -> None:
    run.redis.rpush(f"test:runs:{run.job.id}", f"{what} {os.getpid()} {run.attempt}")


@job_handler(steps=[Step("work", 9, title="Working"), Step("finish", 1, after=("work",))])
def handler(run: JobRun) -> dict[str, Any]:
    store: ArtifactStore = run.context.user_data.store
    _record(run, "start")
    if run.job.type == "train":
        sizes = [len(store.get_bytes(key)) for key in run.params["images"]]
        if run.params["name"] == "fail-first-round" and run.attempt <= 2:
            raise RuntimeError(f"scripted training failure on attempt {run.attempt}")
        run.progress("finish", 1.0)
        _record(run, "end")
        return {"photoBytes": sizes}
    spec = json.loads(run.params.get("stage") or "{}")
    fail = spec.get("fail")
    if isinstance(fail, int) and run.attempt <= fail:
        raise RuntimeError(f"scripted failure on attempt {run.attempt}")
    steps = int(spec.get("steps", 1))
    for i in range(steps):
        time.sleep(float(spec.get("sleep", 0.0)))
        run.progress("work", (i + 1) / steps, f"Working {i + 1}/{steps}")
    # The last report before the result is written: a run that lost its lease stops here.
    run.progress("finish", 1.0)
    key = f"jobs/{run.job.id}/results/{os.getpid()}-{run.attempt}.json"
    store.put_bytes(key, json.dumps({"steps": steps}).encode(), "application/json")
    _record(run, "end")
    return {"steps": steps, "key": key}
