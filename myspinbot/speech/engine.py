"""Choosing the speech engine named in the settings.

`auto` (the default) takes the most natural engine available: a neural Piper voice when
MYSPINBOT_TTS_VOICE names one (never without: such a voice is the user's choice), else
flite's CMU voices, matched and converted toward the person per profile; espeak-ng when
flite is missing (it also speaks the many languages flite lacks: name it to use it).

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
from myspinbot.speech.piper import PiperEngine
from myspinbot.voice.profile import VoiceProfile


class SpeechEngine(Protocol):
    name: str

    def synthesize(self, text: str, voice: VoiceProfile | None) -> Speech:
        """Speak `text`, imitating `voice` as far as the engine can (None: its default)."""
        ...


_ENGINES: dict[str, Callable[[Settings], SpeechEngine]] = {
    "espeak": lambda settings: EspeakEngine(),
    "flite": lambda settings: flite.FliteEngine(voice=settings.tts_voice),
    "piper": lambda settings: PiperEngine(
        settings.tts_voice,
        settings.triton_url,
        retry_s=settings.triton_retry_s,
        admin_key=settings.triton_admin_key,
    ),
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


def engine_name(settings: Settings) -> str:
    """The engine `settings.tts_engine` names, `auto` resolved (nothing is checked)."""
    name = settings.tts_engine.strip().lower()
    if name != AUTO:
        return name
    if settings.tts_voice and _names_piper_voice(settings.tts_voice):
        return "piper"
    return "flite" if flite.installed_voices() else "espeak"


def _names_piper_voice(voice: str) -> bool:
    """A path to a voice file, or a voice an installed package ships (not a flite voice)."""
    from myspinbot.speech.piper_voice import packaged_voices

    voice = voice.strip()
    packaged = packaged_voices()
    return voice.endswith(".onnx") or "/" in voice or voice in packaged or voice.lower() in packaged


def get_engine(settings: Settings) -> SpeechEngine:
    """The engine `settings.tts_engine` names; SpeechError when it is unknown or absent."""
    name = engine_name(settings)
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
