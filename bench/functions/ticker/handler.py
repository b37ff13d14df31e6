"""Benchmark ticker job: waits for a go signal, then reports progress at a steady pace.

Options (`bench` in the JSON `stage` text of a generate request; `options` is strict):

    {"bench": {"ticks": 200, "interval": 0.06, "goTimeout": 120}}

The handler waits until the Redis key `bench:ticker:go:<job id>` exists (the
benchmark sets it once every WebSocket client has subscribed), so every client
sees every progress event. `interval` must stay above the handler's report
throttle (`MIN_REPORT_INTERVAL_S`), or reports would be dropped.
"""

from __future__ import annotations

import json
import time
from typing import Any

from myspinbot.jobs.handler import MIN_REPORT_INTERVAL_S, JobRun, job_handler, setup
from myspinbot.jobs.progress import Step

GO_KEY = "bench:ticker:go:{job_id}"
GO_POLL_S = 0.005


def init_context(context: Any) -> None:
    setup(context)
    context.user_data.capabilities = {"generate": {"available": True, "modes": ["direct"]}}


def _wait_for_go(run: JobRun, timeout_s: float) -> None:
    key = GO_KEY.format(job_id=run.job.id)
    deadline = time.monotonic() + timeout_s
    while not run.redis.exists(key) and time.monotonic() < deadline:
        time.sleep(GO_POLL_S)


@job_handler(steps=[Step("tick", 1, title="Ticking")])
def handler(run: JobRun) -> dict[str, Any]:
    try:
        stage = json.loads(run.params.get("stage") or "{}")
    except ValueError:
        stage = {}
    spec = (stage.get("bench") if isinstance(stage, dict) else None) or {}
    ticks = int(spec.get("ticks", 200))
    interval = max(float(spec.get("interval", 0.06)), MIN_REPORT_INTERVAL_S + 0.005)
    _wait_for_go(run, float(spec.get("goTimeout", 120)))
    for i in range(ticks):
        time.sleep(interval)  # never shorter than the throttle, even after a slow report
        run.progress("tick", (i + 1) / ticks, f"Tick {i + 1}/{ticks}")
    return {"ticks": ticks}
