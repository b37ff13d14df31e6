"""How long a narration takes to say, estimated from its words and the speaker's pace."""

from __future__ import annotations

import math

from myspinbot.script.errors import NarrationTooLong
from myspinbot.voice.profile import ESPEAK_WPM_PER_SPEED, VoiceProfile, espeak_speed

# A typical pace for read-aloud narration, used when there is no voice to measure.
# Slower than espeak-ng's default (~200 wpm), so without a voice the estimate errs long
# and a narration that passes the limit also fits with a slower engine.
DEFAULT_WORDS_PER_MIN = 150.0


def count_words(text: str) -> int:
    # Punctuation-only tokens ("-", "...") are not words, as in voice.profile.
    return sum(1 for token in text.split() if any(c.isalnum() for c in token))


def words_per_min(voice: VoiceProfile | None) -> float:
    """The pace the narration will be spoken at: the espeak-ng speed that imitates the
    speaker (from their transcript's words per minute, else their syllable rate), within
    espeak-ng's range, times its measured words per speed unit."""
    if voice is None:
        return DEFAULT_WORDS_PER_MIN
    return espeak_speed(voice.words_per_min, voice.syllables_per_s) * ESPEAK_WPM_PER_SPEED


def estimate_speech_seconds(text: str, voice: VoiceProfile | None) -> float:
    return count_words(text) * 60.0 / words_per_min(voice)


def check_narration_length(text: str, voice: VoiceProfile | None, max_seconds: float) -> None:
    """Raise NarrationTooLong when the narration would take more than max_seconds to say."""
    seconds = estimate_speech_seconds(text, voice)
    if seconds > max_seconds:
        raise NarrationTooLong(
            # Rounded up: "about 60 s; the limit is 60 s" would read as a pass.
            f"The narration is about {math.ceil(seconds)} s of speech; "
            f"the limit is {max_seconds:g} s. Shorten it."
        )
