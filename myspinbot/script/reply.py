"""Checking what the language model wrote: a JSON object that makes a usable script."""

from __future__ import annotations

import json

from pydantic import ValidationError

from myspinbot.script.length import count_words
from myspinbot.script.models import Script, describe_problems
from myspinbot.script.prompts import WordBudget


class UnusableReply(ValueError):
    """The reply is not a usable script; the message says why, to the model and the user."""


def parse_reply(text: str, budget: WordBudget) -> Script:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise UnusableReply("the reply is not valid JSON") from None
    if not isinstance(data, dict):
        raise UnusableReply("the reply is JSON but not an object with `stage` and `narration`")
    try:
        # Only the two fields are read: a model that adds a "title" still wrote a script.
        script = Script.model_validate({k: data[k] for k in ("stage", "narration") if k in data})
    except ValidationError as exc:
        raise UnusableReply(describe_problems(exc)) from None
    words = count_words(script.narration)
    if words > budget.maximum:
        raise UnusableReply(
            f"the narration has {words} words; it must have at most {budget.maximum}"
        )
    return script
