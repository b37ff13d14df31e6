"""Guided mode: a language model writes the script from a person's request."""

from __future__ import annotations

from myspinbot.script import ollama, prompts
from myspinbot.script.errors import LlmUnavailable, ScriptError
from myspinbot.script.models import Script
from myspinbot.script.reply import UnusableReply, parse_reply
from myspinbot.settings import Settings

# One retry, told what was wrong, fixes most slips (a stray sentence before the JSON, a
# missing key); a model that fails twice is unlikely to manage a third time.
ATTEMPTS = 2


def guided_status(settings: Settings) -> tuple[bool, str | None]:
    """(True, None) when guided mode can run now, else (False, the reason, for people)."""
    try:
        ollama.check_available(settings)
    except LlmUnavailable as exc:
        return False, str(exc)
    return True, None


def write_script(prompt: str, settings: Settings, *, target_seconds: float) -> Script:
    """Ask the LLM for a script whose narration takes at most target_seconds to say.

    Raises LlmUnavailable when the LLM cannot be used, ScriptError when it answers
    unusably twice.
    """
    if target_seconds <= 0:
        raise ValueError(f"target_seconds must be positive, got {target_seconds}")
    if not prompt.strip():
        raise ScriptError("Guided mode needs a prompt: say what the video should be about.")
    budget = prompts.WordBudget.for_seconds(target_seconds)
    first = prompts.first_prompt(prompt, budget, target_seconds)
    request = first
    problem = ""
    for _ in range(ATTEMPTS):
        reply = ollama.generate(settings, prompt=request, system=prompts.SYSTEM)
        try:
            return parse_reply(reply, budget)
        except UnusableReply as exc:
            problem = str(exc)
            request = prompts.retry_prompt(first, reply, problem)
    raise ScriptError(
        f"The language model returned an unusable script twice: {problem}. "
        "Try again, or rephrase the prompt."
    )
