"""Read side of jobs: live state from Redis, history from SQL."""

from __future__ import annotations

from typing import Any

import redis

from myspinbot import keys
from myspinbot.db import JobHistory
from myspinbot.jobs.livestate import job_from_hash
from myspinbot.jobs.models import Job


class JobQueries:
    def __init__(self, client: redis.Redis, history: JobHistory) -> None:
        self._redis = client
        self._history = history

    def get(self, job_id: str) -> Job | None:
        live = job_from_hash(self._redis.hgetall(keys.job(job_id)))
        return live or self._history.get_job(job_id)

    def page(
        self,
        limit: int,
        offset: int,
        type: str | None = None,
        state: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], int]:
        jobs, total = self._history.list_jobs(
            limit=limit, offset=offset, type=type, state=state, owner=owner
        )
        if not jobs:
            return jobs, total
        # SQL holds milestones only; the live progress of running jobs is in Redis.
        pipe = self._redis.pipeline(transaction=False)
        for j in jobs:
            pipe.hgetall(keys.job(j.id))
        live = [job_from_hash(h) for h in pipe.execute()]
        return [lv or j for j, lv in zip(jobs, live, strict=True)], total

    def detail(self, job_id: str) -> dict[str, Any] | None:
        job = self.get(job_id)
        if job is None:
            return None
        events = self._history.job_events(job_id)
        return {
            **job.status_view(),
            "params": job.params,
            "events": [e.model_dump(by_alias=True, mode="json") for e in events],
        }
