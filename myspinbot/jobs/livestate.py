"""Reading a job's live copy out of its Redis hash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from myspinbot.jobs.models import Job

_JSON_FIELDS = ("params", "result")
_FLOAT_FIELDS = ("progress", "eta_seconds", "created_at", "started_at", "finished_at", "updated_at")


def job_from_hash(h: Mapping[Any, Any]) -> Job | None:
    if not h or "type" not in h or "state" not in h:
        return None
    data: dict[str, Any] = {k: v for k, v in h.items() if k != "src"}
    for f in _JSON_FIELDS:
        if f in data:
            data[f] = json.loads(data[f]) if data[f] else None
    for f in _FLOAT_FIELDS:
        if f in data:
            data[f] = float(data[f])
    data["params"] = data.get("params") or {}
    data["attempt"] = int(data.get("attempt", 1))
    return Job.model_validate(data)


def pairs_to_dict(flat: list[Any]) -> dict[str, Any]:
    """HGETALL as a Lua script returns it: a flat [k1, v1, k2, v2, ...] list."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
