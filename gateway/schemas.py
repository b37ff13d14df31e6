"""Request bodies, validated at the edge with messages a person can act on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_NARRATION_CHARS = 5000
MAX_PROMPT_CHARS = 2000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class TrainOptions(_Strict):
    """Training knobs; everything has a default (the DreamBooth-LoRA ones)."""

    steps: int = Field(500, ge=1, le=20_000, description="Optimizer steps.")
    rank: int = Field(16, ge=1, le=256, description="LoRA rank.")
    alpha: float | None = Field(None, gt=0, le=1024, description="LoRA alpha (default: rank).")
    learning_rate: float = Field(1e-4, gt=0, le=1.0, alias="learningRate")
    batch_size: int = Field(1, ge=1, le=64, alias="batchSize")
    resolution: int | None = Field(None, ge=64, le=2048, description="Default: the model's own.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    trigger_token: str | None = Field(None, min_length=1, max_length=40, alias="triggerToken")
    checkpoint_every: int | None = Field(None, ge=1, alias="checkpointEvery")
    gradient_checkpointing: bool = Field(False, alias="gradientCheckpointing")


class GenerateRequest(_Strict):
    profile_id: str | None = Field(None, alias="profileId", max_length=64)
    mode: Literal["guided", "direct"] = Field(
        description="`direct`: you give the narration; `guided`: an LLM writes it from `prompt`."
    )
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    narration: str | None = Field(None, max_length=MAX_NARRATION_CHARS)
    stage: str | None = Field(None, max_length=1000, description="Scene description.")
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mode_needs(self) -> GenerateRequest:
        if self.mode == "direct" and not self.narration:
            raise ValueError("`narration` must not be empty in direct mode")
        if self.mode == "guided" and not self.prompt:
            raise ValueError("`prompt` (the topic) is required in guided mode")
        return self


class Accepted(BaseModel):
    job_id: str = Field(alias="jobId")
    status: str = "queued"

    model_config = ConfigDict(populate_by_name=True)
