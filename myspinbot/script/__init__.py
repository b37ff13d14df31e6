"""The script of a video: written by a person (direct mode) or by an LLM (guided mode)."""

from myspinbot.script.errors import LlmUnavailable, NarrationTooLong, ScriptError
from myspinbot.script.length import check_narration_length, estimate_speech_seconds
from myspinbot.script.models import Script, direct_script
from myspinbot.script.writer import guided_status, write_script

__all__ = [
    "LlmUnavailable",
    "NarrationTooLong",
    "Script",
    "ScriptError",
    "check_narration_length",
    "direct_script",
    "estimate_speech_seconds",
    "guided_status",
    "write_script",
]
