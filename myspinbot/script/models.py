"""The script of a video: what the speaker says, and optionally the scene behind them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from myspinbot.script.errors import ScriptError

# The gateway accepts the same lengths (gateway/schemas.py), so a script written by the
# language model is held to what a person could have typed.
MAX_NARRATION_CHARS = 5000
MAX_STAGE_CHARS = 1000


class Script(BaseModel):
    # Whitespace is stripped before the length rules apply, so "   " is an empty narration.
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    stage: str | None = Field(None, max_length=MAX_STAGE_CHARS)  # scene description
    narration: str = Field(min_length=1, max_length=MAX_NARRATION_CHARS)

    @field_validator("stage")
    @classmethod
    def _blank_stage_is_none(cls, value: str | None) -> str | None:
        return value or None


def direct_script(narration: str, stage: str | None) -> Script:
    """The script a person wrote themselves; ScriptError says what is wrong with it."""
    try:
        return Script(narration=narration, stage=stage)
    except ValidationError as exc:
        raise ScriptError(f"The script cannot be used: {describe_problems(exc)}.") from None


def describe_problems(exc: ValidationError) -> str:
    """A validation failure in words a person (or a language model) can act on."""
    return "; ".join(_describe(err) for err in exc.errors())


def _describe(err: ErrorDetails) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "the script"
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"`{field}` is missing"
    if kind == "string_too_short":
        return f"`{field}` is empty"
    if kind == "string_too_long":
        return f"`{field}` is longer than {ctx.get('max_length')} characters"
    if kind == "string_type":
        return f"`{field}` must be a string"
    return f"`{field}`: {err['msg']}"
