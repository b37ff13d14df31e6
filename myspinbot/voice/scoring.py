"""Scoring a generated narration against the person's clip (the generate result's
voice-match score): the produced speech's similarity, and the base voice's beside it."""

from __future__ import annotations

import numpy as np

from myspinbot.speech import flite
from myspinbot.speech.models import Speech
from myspinbot.voice import embedding
from myspinbot.voice.matchmodel import NarrationMatch
from myspinbot.voice.profile import VoiceProfile


def narration_match(
    speech: Speech, text: str, voice: VoiceProfile | None, engine: str
) -> NarrationMatch | None:
    """None when the profile has no voice match or another engine spoke."""
    match = voice.match if voice is not None else None
    if match is None or engine != match.engine:
        return None
    target = np.asarray(match.clip_embedding)
    produced = embedding.embed(speech.samples.astype(np.float64), speech.sample_rate)
    base, rate = flite.speak(text, match.base_voice, match.stretch)
    return NarrationMatch(
        engine=match.engine,
        base_voice=match.base_voice,
        converted=match.conversion is not None,
        score=round(embedding.similarity(produced, target), 4),
        base_score=round(embedding.similarity(embedding.embed(base, rate), target), 4),
    )
