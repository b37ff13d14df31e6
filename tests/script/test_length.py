"""Narration length: estimated from word count and the speaker's pace, then limited."""

from __future__ import annotations

import pytest

from myspinbot.script import (
    NarrationTooLong,
    ScriptError,
    check_narration_length,
    direct_script,
    estimate_speech_seconds,
)
from myspinbot.voice.profile import SAMPLE_RATE, VoiceProfile


def profile(words_per_min: float | None, syllables_per_s: float = 4.8) -> VoiceProfile:
    return VoiceProfile(
        duration_s=6.0,
        speech_s=5.0,
        sample_rate=SAMPLE_RATE,
        median_pitch_hz=120.0,
        pitch_iqr_hz=15.0,
        syllables_per_s=syllables_per_s,
        words_per_min=words_per_min,
        loudness_dbfs=-20.0,
        gain_db=0.0,
        transcript="some words" if words_per_min else None,
    )


def words(n: int) -> str:
    return " ".join(["bread"] * n) + "."


def test_estimate_uses_the_speakers_pace() -> None:
    assert estimate_speech_seconds(words(150), None) == pytest.approx(60)  # ~150 wpm
    # The pace the engine will speak at: the espeak-ng speed imitating 100 wpm (within
    # rounding of the speed to whole units).
    assert estimate_speech_seconds(words(150), profile(words_per_min=100)) == pytest.approx(
        90, rel=0.01
    )
    # A transcript that implies 30 wpm is spoken at espeak-ng's slowest, not at 30 wpm.
    assert estimate_speech_seconds(words(150), profile(words_per_min=30)) < 100
    # Without a transcript, the syllable rate stands in: faster talkers take less time.
    slow = estimate_speech_seconds(words(150), profile(None, syllables_per_s=3.0))
    fast = estimate_speech_seconds(words(150), profile(None, syllables_per_s=6.0))
    assert slow > fast


def test_punctuation_is_not_words() -> None:
    assert estimate_speech_seconds("Hello - world ...", None) == pytest.approx(0.8)


def test_too_long_narration_says_by_how_much() -> None:
    check_narration_length(words(150), None, max_seconds=60)  # exactly fits
    with pytest.raises(NarrationTooLong) as exc:
        check_narration_length(words(207), None, max_seconds=60)
    assert str(exc.value) == (
        "The narration is about 83 s of speech; the limit is 60 s. Shorten it."
    )


def test_direct_script_is_cleaned_and_checked() -> None:
    script = direct_script("  Hello there.  ", "  ")
    assert (script.narration, script.stage) == ("Hello there.", None)
    with pytest.raises(ScriptError, match="`narration` is empty"):
        direct_script("  \n ", "A kitchen.")
    with pytest.raises(ScriptError, match="`narration` is longer than 5000 characters"):
        direct_script("x" * 5001, None)
    with pytest.raises(ScriptError, match="`stage` is longer than 1000 characters"):
        direct_script("Hello.", "x" * 1001)
