"""The options of a training job, validated at the gateway and again by the train function."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainOptions(BaseModel):
    """Training knobs; everything has a default (the DreamBooth-LoRA ones)."""

    # Unknown keys are an error: a misspelt option must not be silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

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
