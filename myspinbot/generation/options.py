"""What a generate request may ask for, validated at the gateway and again in the job."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scheduler = Literal["default", "ddim", "euler", "dpm", "pndm"]


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    portrait: Literal["render", "photo"] | None = Field(
        None,
        description="`render`: the profile's LoRA renders the person in the `stage` scene "
        "(through Triton); `photo`: the profile's best training photo. Default: `render` "
        "with a real base model, `photo` with the built-in random-weight ones.",
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Seed of the rendering.")
    steps: int = Field(25, ge=1, le=150, description="Diffusion steps of the rendering.")
    guidance_scale: float = Field(7.5, ge=1.0, le=30.0, alias="guidanceScale")
    scheduler: Scheduler = "default"
    size: int | None = Field(
        None, ge=64, le=2048, multiple_of=16, description="Video side in pixels."
    )
    upscale: bool = Field(
        False, description="Animate at half the size, then Lanczos-upscale every frame."
    )
