"""What a generate request may ask for, validated at the gateway and again in the job."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Where an uploaded portrait is kept (re-exported: the gateway and pipeline import it here).
from myspinbot.storage.layout import portrait_key as portrait_key

Scheduler = Literal["default", "ddim", "euler", "dpm", "pndm"]


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    portrait: Literal["render", "photo", "upload"] | None = Field(
        None,
        description="`render`: the profile's LoRA renders the person in the `stage` scene "
        "(through Triton); `photo`: the profile's best training photo; `upload`: an image "
        "sent to `POST /api/portraits` (`portraitImage`). Default: `render` with a real base "
        "model, `photo` with the built-in random-weight ones.",
    )
    portrait_image: str | None = Field(
        None,
        alias="portraitImage",
        pattern=r"^[0-9a-f]{32}$",
        description="The `portraitId` from `POST /api/portraits` (portrait `upload`).",
    )
    narration_audio: str | None = Field(
        None,
        alias="narrationAudio",
        pattern=r"^[0-9a-f]{32}$",
        description="The `narrationId` from `POST /api/narrations`: the person's own recording "
        "narrates the video instead of text-to-speech. `narration`, if given, is its "
        "transcript (lip shapes per sound); without one the mouth follows loudness.",
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

    @model_validator(mode="after")
    def _upload_needs_image(self) -> GenerateOptions:
        if self.portrait_image and self.portrait is None:
            self.portrait = "upload"
        if self.portrait == "upload" and not self.portrait_image:
            raise ValueError("portrait `upload` needs `portraitImage` (from POST /api/portraits)")
        if self.portrait_image and self.portrait != "upload":
            raise ValueError("`portraitImage` goes with portrait `upload`")
        return self
