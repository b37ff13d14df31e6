"""Why a script could not be had; every message is shown to the person who asked."""

from __future__ import annotations

from myspinbot.errors import PermanentError


class ScriptError(PermanentError):
    """No usable script: bad narration, or a language model that answered unusably twice."""


class LlmUnavailable(ScriptError):
    """Guided mode cannot run: no LLM configured, or the configured one cannot be used."""


class NarrationTooLong(PermanentError):
    """The narration would take longer to speak than the platform allows."""
