"""What a job pipeline (train, generate) is given by its function replica: one type for all."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from myspinbot.db import JobHistory
from myspinbot.settings import Settings
from myspinbot.storage import ArtifactStore


@dataclass
class PipelineDeps:
    """The platform's services, built once per replica and shared by its jobs."""

    store: ArtifactStore
    history: JobHistory
    settings: Settings
    redis: redis.Redis


__all__ = ["PipelineDeps"]
