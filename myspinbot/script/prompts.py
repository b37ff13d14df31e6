"""What the language model is told: the task, the reply format, and how long to write."""

from __future__ import annotations

import math
from dataclasses import dataclass

from myspinbot.script.length import DEFAULT_WORDS_PER_MIN

SYSTEM = """\
You write scripts for short videos in which one person speaks straight to the camera.
Reply with a single JSON object and nothing else. It has exactly two keys:
"stage": one sentence describing the scene behind the speaker (place, light, mood);
"narration": the exact words the speaker says, as plain spoken sentences in one string.
The narration is read aloud by a speech engine, so it must contain no stage directions,
headings, lists, markdown, emoji, hashtags or speaker labels."""

# Models overshoot a requested length more often than they undershoot it, so they are
# asked for this share of the limit, with the limit itself stated as a hard maximum.
TARGET_SHARE = 0.85

PREVIOUS_REPLY_CHARS = 600


@dataclass(frozen=True)
class WordBudget:
    target: int  # asked for
    maximum: int  # accepted

    @classmethod
    def for_seconds(cls, seconds: float) -> WordBudget:
        # At DEFAULT_WORDS_PER_MIN, the pace length.estimate_speech_seconds assumes
        # without a voice: a narration within `maximum` words is within `seconds`.
        maximum = max(1, math.floor(seconds * DEFAULT_WORDS_PER_MIN / 60))
        return cls(target=max(1, round(maximum * TARGET_SHARE)), maximum=maximum)


def first_prompt(request: str, budget: WordBudget, seconds: float) -> str:
    return (
        f"Write the script for this video:\n{request.strip()}\n\n"
        f"The narration should take about {seconds:g} seconds to say: about {budget.target} "
        f"words, and never more than {budget.maximum}."
    )


def retry_prompt(first: str, previous_reply: str, problem: str) -> str:
    shown = previous_reply.strip()
    if len(shown) > PREVIOUS_REPLY_CHARS:
        shown = shown[:PREVIOUS_REPLY_CHARS] + "..."
    return (
        f"{first}\n\nYour previous reply could not be used: {problem}.\n"
        f"Previous reply:\n{shown}\n\n"
        'Reply again with only the JSON object {"stage": "...", "narration": "..."}.'
    )
