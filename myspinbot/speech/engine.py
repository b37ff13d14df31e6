"""Choosing the speech engine named in the settings.

`auto` (the default) takes the most natural engine installed: flite's CMU voices, matched
and converted toward the person per profile; espeak-ng when flite is missing (it also
speaks the many languages flite lacks: name it to use it).

Engines are looked up by name, so a neural voice-cloning engine (F5-TTS or GPT-SoVITS
served by Triton, speaking from the profile's stored reference clip and transcript)
slots in as one more entry in _ENGINES once it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from myspinbot.settings import Settings
from myspinbot.speech import flite
from myspinbot.speech.espeak import EspeakEngine
from myspinbot.speech.models import Speech, SpeechError
from myspinbot.voice.profile import VoiceProfile


class SpeechEngine(Protocol):
    name: str

    def synthesize(self, text: str, voice: VoiceProfile | None) -> Speech:
        """Speak `text`, imitating `voice` as far as the engine can (None: its default)."""
        ...


_ENGINES: dict[str, Callable[[Settings], SpeechEngine]] = {
    "espeak": lambda settings: EspeakEngine(),
    "flite": lambda settings: flite.FliteEngine(voice=settings.tts_voice),
}
AUTO = "auto"

# Names the platform reserves for engines this build does not include, so choosing one
# says "not here" rather than "no such thing".
_NOT_IN_THIS_BUILD: dict[str, str] = {
    "f5-tts": "F5-TTS voice cloning",
    "gpt-sovits": "GPT-SoVITS voice cloning",
}


def known_engines() -> list[str]:
    return sorted({AUTO, *_ENGINES, *_NOT_IN_THIS_BUILD})


def get_engine(settings: Settings) -> SpeechEngine:
    """The engine `settings.tts_engine` names; SpeechError when it is unknown or absent."""
    name = settings.tts_engine.strip().lower()
    if name == AUTO:
        name = "flite" if flite.installed_voices() else "espeak"
    factory = _ENGINES.get(name)
    if factory is not None:
        return factory(settings)
    if name in _NOT_IN_THIS_BUILD:
        raise SpeechError(
            f"The speech engine `{name}` ({_NOT_IN_THIS_BUILD[name]}) is not available in "
            "this build; set MYSPINBOT_TTS_ENGINE=auto to use the best installed engine."
        )
    raise SpeechError(
        f"Unknown speech engine `{settings.tts_engine}` (MYSPINBOT_TTS_ENGINE); "
        f"known engines: {', '.join(known_engines())}."
    )
