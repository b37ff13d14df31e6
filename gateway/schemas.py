"""Request bodies, validated at the edge with messages a person can act on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from myspinbot.generation.options import GenerateOptions
from myspinbot.training.options import TrainOptions

__all__ = ["Accepted", "GenerateOptions", "GenerateRequest", "TrainOptions"]

MAX_NARRATION_CHARS = 5000
MAX_PROMPT_CHARS = 2000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


# What `_mode_needs` checks, said in the JSON schema too, so that clients (and the fuzzer,
# tests/fuzzing.py) know a valid request before sending it.
_MODE_NEEDS: dict[str, Any] = {
    "anyOf": [
        {
            "properties": {
                "mode": {"const": "direct"},
                "narration": {"type": "string", "pattern": r"\S"},
            },
            "required": ["narration"],
        },
        {
            "properties": {
                "mode": {"const": "direct"},
                "options": {
                    "properties": {"narrationAudio": {"type": "string"}},
                    "required": ["narrationAudio"],
                },
            },
            "required": ["options"],
        },
        {
            "properties": {
                "mode": {"const": "guided"},
                "prompt": {"type": "string", "pattern": r"\S"},
                "options": {"not": {"required": ["narrationAudio"]}},
            },
            "required": ["prompt"],
        },
    ]
}


class GenerateRequest(_Strict):
    model_config = ConfigDict(json_schema_extra=_MODE_NEEDS)

    profile_id: str | None = Field(None, alias="profileId", max_length=64)
    mode: Literal["guided", "direct"] = Field(
        description="`direct`: you give the narration; `guided`: an LLM writes it from `prompt`."
    )
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    narration: str | None = Field(None, max_length=MAX_NARRATION_CHARS)
    stage: str | None = Field(None, max_length=1000, description="Scene description.")
    options: GenerateOptions = Field(default_factory=GenerateOptions)

    @model_validator(mode="after")
    def _mode_needs(self) -> GenerateRequest:
        recorded = self.options.narration_audio is not None
        if self.mode == "direct" and not self.narration and not recorded:
            raise ValueError("`narration` must not be empty in direct mode")
        if self.mode == "guided" and recorded:
            raise ValueError("`options.narrationAudio` (a recording) goes with direct mode")
        if self.mode == "guided" and not self.prompt:
            raise ValueError("`prompt` (the topic) is required in guided mode")
        return self


class Accepted(BaseModel):
    job_id: str = Field(alias="jobId")
    status: str = "queued"

    model_config = ConfigDict(populate_by_name=True)
