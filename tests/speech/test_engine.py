"""Choosing the speech engine from the settings."""

from __future__ import annotations

import pytest

from myspinbot.settings import Settings
from myspinbot.speech import EspeakEngine, SpeechError, get_engine


def test_espeak_is_the_default_engine() -> None:
    engine = get_engine(Settings())
    assert isinstance(engine, EspeakEngine) and engine.name == "espeak"
    assert isinstance(get_engine(Settings(tts_engine=" ESPEAK ")), EspeakEngine)


@pytest.mark.parametrize("name", ["f5-tts", "gpt-sovits"])
def test_known_engine_not_in_this_build_says_so(name: str) -> None:
    with pytest.raises(SpeechError, match=f"`{name}`.*not available in this build.*espeak"):
        get_engine(Settings(tts_engine=name))


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(SpeechError, match="Unknown speech engine `festival`") as exc:
        get_engine(Settings(tts_engine="festival"))
    assert "espeak, f5-tts, gpt-sovits" in str(exc.value)
