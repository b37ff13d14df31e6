"""A profile's voice at training time: the measured clip plus, where flite speaks for the
profile, the matched base voice and its conversion toward the person."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable

import numpy as np

from myspinbot.settings import Settings
from myspinbot.speech import flite
from myspinbot.voice import matching, recognise
from myspinbot.voice.analysis import FloatArray
from myspinbot.voice.profile import SAMPLE_RATE, VoiceError, VoiceResult, build_voice_profile


def matching_applies(settings: Settings) -> bool:
    """Whether this platform's speech engine is one a voice match is learnt for."""
    from myspinbot.speech.engine import engine_name

    return engine_name(settings) == "flite" and bool(flite.installed_voices())


def screen_voice_clip(
    data: bytes, filename: str, transcript: str | None, settings: Settings
) -> VoiceResult:
    """What training checks first, run where the clip is uploaded: decodable, not silent,
    3-30 s of sound and, where the words are needed and not given, recognisable speech.
    Raises VoiceError with a sentence the person can act on."""
    built = build_voice_profile(data, filename, transcript)
    if matching_applies(settings) and built.profile.transcript is None:
        _recognised_words(built, filename)
    return built


def build_matched_voice(
    data: bytes,
    filename: str,
    transcript: str | None,
    settings: Settings,
    progress: Callable[[float, str], None] | None = None,
) -> VoiceResult:
    """build_voice_profile, then the voice match. VoiceError for clips without speech."""
    say = progress or (lambda fraction, message: None)
    built = build_voice_profile(data, filename, transcript)
    if not matching_applies(settings):
        return built
    words = built.profile.transcript
    if words is None:
        say(0.0, "Transcribing the voice clip")
        words = _recognised_words(built, filename)
    voices = (settings.tts_voice,) if settings.tts_voice else matching.MATCH_VOICES
    if settings.tts_voice:
        flite.check_voice(settings.tts_voice)
    match = matching.match_voice(_samples(built), SAMPLE_RATE, words, progress=say, voices=voices)
    return VoiceResult(profile=built.profile.model_copy(update={"match": match}), wav=built.wav)


def _samples(built: VoiceResult) -> FloatArray:
    with wave.open(io.BytesIO(built.wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0


def _recognised_words(built: VoiceResult, filename: str) -> str:
    words = recognise.transcribe(_samples(built), SAMPLE_RATE)
    if len(words.split()) < 2:
        raise VoiceError(
            f"no speech could be recognised in {filename}: record yourself reading a "
            "sentence or two aloud (3-30 s)"
        )
    return words
