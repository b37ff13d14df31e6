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
    """A stored file of a job or profile: where it is (the S3 key), never a link.

    Results hold these; the gateway signs a short-lived download URL each time it hands a
    result out (gateway/links.py). A URL stored here would outlive its purpose in Redis,
    SQL and every copy of them, so one that arrives (an older function) is dropped.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    key: str
    size: int | None = None
    content_type: str | None = Field(None, alias="contentType")

    def stored(self) -> dict[str, Any]:
        """The form results keep (JSON in Redis, SQL and events)."""
        return self.model_dump(by_alias=True, exclude_none=True)


def stored_result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """`result` as it may be stored: its `artifacts` and `video` as keys, without links."""
    if result is None:
        return None
    out = dict(result)
    if isinstance(out.get("artifacts"), list):
        out["artifacts"] = [_stored_artifact(a) for a in out["artifacts"]]
    if isinstance(out.get("video"), dict):
        out["video"] = _stored_artifact(out["video"])
    return out


def _stored_artifact(artifact: Any) -> Any:
    if isinstance(artifact, dict) and artifact.get("name") and artifact.get("key"):
        return Artifact.model_validate(artifact).stored()
    if isinstance(artifact, dict):
        return {k: v for k, v in artifact.items() if k != "url"}
    return artifact


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
