"""The flite engine: real CMU voices from the Debian package, read back and checked."""

from __future__ import annotations

import numpy as np
import pytest

from myspinbot.settings import Settings
from myspinbot.speech import SpeechError, get_engine
from myspinbot.speech.flite import FliteEngine, installed_voices, speak
from myspinbot.voice import recognise
from myspinbot.voice.profile import SAMPLE_RATE

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def test_the_cmu_voices_are_installed() -> None:
    assert installed_voices() == ["slt", "rms", "awb", "kal16"]


def test_flite_speaks_the_words() -> None:
    speech = FliteEngine().synthesize(TEXT, None)
    assert speech.sample_rate == SAMPLE_RATE and 2.0 < speech.duration_s < 8.0
    # Trimmed: it starts and ends near the sound.
    assert np.abs(speech.samples[: SAMPLE_RATE // 100]).max() < 0.2
    heard = recognise.transcribe(speech.samples, speech.sample_rate)
    assert recognise.word_error_rate(TEXT, heard) <= 0.35, heard


@pytest.mark.parametrize("voice", ["slt", "rms", "awb", "kal16"])
def test_each_voice_speaks(voice: str) -> None:
    samples, rate = speak("Hello there.", voice)
    assert rate >= 8000 and len(samples) > rate // 4


def test_stretch_slows_it_down() -> None:
    normal, _ = speak(TEXT, "slt", 1.0)
    slow, _ = speak(TEXT, "slt", 1.3)
    assert 1.2 < len(slow) / len(normal) < 1.4


def test_a_configured_voice_is_used() -> None:
    engine = get_engine(Settings(tts_engine="flite", tts_voice="awb"))
    assert isinstance(engine, FliteEngine) and engine.voice == "awb"


def test_unknown_voice_is_refused_at_configuration() -> None:
    with pytest.raises(SpeechError, match=r"Unknown flite voice `bob`.*slt, rms, awb, kal16"):
        get_engine(Settings(tts_engine="flite", tts_voice="bob"))


def test_nothing_to_say_is_refused() -> None:
    with pytest.raises(SpeechError, match="no text"):
        FliteEngine().synthesize("   ", None)
