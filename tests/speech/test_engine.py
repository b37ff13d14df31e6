"""Choosing the speech engine from the settings."""

from __future__ import annotations

import pytest

from myspinbot.settings import Settings
from myspinbot.speech import EspeakEngine, SpeechError, get_engine
from myspinbot.speech.flite import FliteEngine


def test_flite_is_the_default_engine_when_installed() -> None:
    engine = get_engine(Settings())
    assert isinstance(engine, FliteEngine) and engine.name == "flite"


def test_espeak_can_be_chosen() -> None:
    assert isinstance(get_engine(Settings(tts_engine=" ESPEAK ")), EspeakEngine)


def test_auto_falls_back_to_espeak_without_flite(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a machine without the flite package: the platform still speaks, with espeak-ng.
    monkeypatch.setattr("myspinbot.speech.flite.installed_voices", lambda: [])
    assert get_engine(Settings()).name == "espeak"


@pytest.mark.parametrize("name", ["f5-tts", "gpt-sovits"])
def test_known_engine_not_in_this_build_says_so(name: str) -> None:
    with pytest.raises(SpeechError, match=f"`{name}`.*not available in this build.*auto"):
        get_engine(Settings(tts_engine=name))


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(SpeechError, match="Unknown speech engine `festival`") as exc:
        get_engine(Settings(tts_engine="festival"))
    assert "auto, espeak, f5-tts, flite, gpt-sovits" in str(exc.value)
