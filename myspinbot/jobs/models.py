"""The job model shared by the gateway, the functions and the SQL history."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobType = Literal["train", "generate"]


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.completed, JobState.failed, JobState.cancelled)


TERMINAL_STATES = frozenset(s for s in JobState if s.terminal)


class EventKind(StrEnum):
    """What a job event is; the WebSocket `type` is derived from it."""

    created = "created"
    state = "state"
    progress = "progress"


class Artifact(BaseModel):
    name: str
    key: str
    url: str | None = None
    size: int | None = None
    content_type: str | None = Field(None, alias="contentType")

    model_config = ConfigDict(populate_by_name=True)


def new_job_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Job(BaseModel):
    """A job as the platform knows it: Redis holds the live copy, SQL the history."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(default_factory=new_job_id)
    type: JobType
    state: JobState = JobState.queued
    progress: float = Field(0.0, ge=0, le=100)
    step: str | None = None
    message: str | None = None
    eta_seconds: float | None = Field(None, alias="etaSeconds")
    attempt: int = 1
    # The user id of who submitted it (issue 11). None only for history from before
    # accounts existed; the migration gives those to the owner account.
    owner: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = Field(default_factory=now, alias="createdAt")
    started_at: float | None = Field(None, alias="startedAt")
    finished_at: float | None = Field(None, alias="finishedAt")
    updated_at: float = Field(default_factory=now, alias="updatedAt")

    def status_view(self) -> dict[str, Any]:
        """The `/api/status/{id}` body."""
        return {
            "jobId": self.id,
            "type": self.type,
            "state": self.state.value,
            "progress": round(self.progress, 2),
            "step": self.step,
            "message": self.message,
            "etaSeconds": self.eta_seconds,
            "result": self.result,
            "error": self.error,
            "attempt": self.attempt,
            "owner": self.owner,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "updatedAt": self.updated_at,
        }


class JobEvent(BaseModel):
    """One applied job event, as stored in SQL and sent over the WebSocket."""

    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(alias="jobId")
    event_id: str = Field(alias="eventId")
    kind: EventKind
    state: JobState
    progress: float
    step: str | None = None
    message: str | None = None
    eta_seconds: float | None = Field(None, alias="etaSeconds")
    error: str | None = None
    result: dict[str, Any] | None = None
    # Numbers a step wants to show (training: step, totalSteps, loss, itPerS).
    metrics: dict[str, Any] | None = None
    ts: float = Field(default_factory=now)
