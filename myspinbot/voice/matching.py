"""Matching a base voice to the person: pick the nearest, learn the conversion, score it.

Runs once per profile at training time (tens of seconds on CPU): every installed base
voice says the clip's words, a speaker embedding picks the one that already sounds most
like the person, and a parallel conversion (voice.conversion) is learnt from that voice
to the clip. The score is measured on a sentence the conversion never saw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from myspinbot.speech import audio, flite
from myspinbot.voice import analysis, conversion, embedding, recognise
from myspinbot.voice.analysis import FloatArray, FrameGrid
from myspinbot.voice.matchmodel import VoiceConversion, VoiceMatch
from myspinbot.voice.profile import VoiceError

# Held out from training: scores how the profile will sound on a narration.
SCORE_TEXT = (
    "Good morning. Today I would like to tell you about a small project that taught me "
    "more than I expected, and about the people who helped me finish it. We started in "
    "the spring with a borrowed garden, three packets of seeds and a great deal of hope."
)
STRETCH_RANGE = (0.75, 1.35)
# The conversion may cost at most this much word error rate over the base voice...
WER_ALLOWANCE = 0.2
# ... trying the learnt strength, then these fractions of it.
STRENGTH_STEPS = (1.0, 0.75, 0.5)
# Candidates for matching: the natural voices. kal16 (an older diphone voice) often sounds
# "nearer" to narrow-band recordings but loses the most intelligibility when converted.
MATCH_VOICES = ("slt", "rms", "awb")

Progress = Callable[[float, str], None]


def _speech_s(samples: FloatArray, rate: int) -> float:
    """Seconds of sound, pauses left out: a clip's pauses say little about its pace."""
    grid = FrameGrid.for_rate(rate)
    levels = analysis.levels_db(grid.frames(samples))
    return float(np.sum(levels > analysis.speech_threshold_db(levels)) * analysis.HOP_S)


def _intelligible_strength(
    conv: VoiceConversion, plain: FloatArray, rate: int, base_wer: float
) -> tuple[VoiceConversion, FloatArray, float]:
    """The strongest conversion (of STRENGTH_STEPS times the learnt one) whose speech the
    recogniser still follows within WER_ALLOWANCE of the base voice: a clip that is noisy,
    narrow-band or whose transcript is off learns a map that smears words at full strength.
    """
    tried: list[tuple[VoiceConversion, FloatArray, float]] = []
    for step in STRENGTH_STEPS if conv.strength > 0 else (1.0,):
        candidate = conv.model_copy(update={"strength": round(conv.strength * step, 3)})
        produced = conversion.convert(plain, rate, candidate)
        wer = recognise.word_error_rate(
            SCORE_TEXT, recognise.transcribe(produced, candidate.sample_rate)
        )
        tried.append((candidate, produced, wer))
        if wer <= base_wer + WER_ALLOWANCE:
            return tried[-1]
    return min(tried, key=lambda t: t[2])


def match_voice(
    clip: FloatArray,
    clip_rate: int,
    transcript: str,
    progress: Progress | None = None,
    strength: float = conversion.DEFAULT_STRENGTH,
    voices: tuple[str, ...] = MATCH_VOICES,
) -> VoiceMatch:
    """The best flite base voice for the person in `clip`, who says `transcript`."""
    say = progress or (lambda fraction, message: None)
    voices = tuple(v for v in flite.installed_voices() if v in voices)
    if not voices:
        flite.flite_exe()
        raise VoiceError("flite has no usable voices installed")
    if not transcript.strip():
        raise VoiceError(
            "no words could be recognised in the voice clip; record yourself reading a "
            "sentence aloud, or give its transcript"
        )
    target = embedding.embed(clip, clip_rate)
    renditions: dict[str, tuple[FloatArray, int]] = {}
    candidates: dict[str, float] = {}
    for i, name in enumerate(voices):
        say(i / (len(voices) + 2), f"Comparing the base voice {name}")
        samples, rate = flite.speak(transcript, name)
        renditions[name] = (samples, rate)
        candidates[name] = round(embedding.similarity(embedding.embed(samples, rate), target), 4)
    best = max(candidates, key=lambda v: candidates[v])
    base, base_rate = renditions[best]
    say(len(voices) / (len(voices) + 2), f"Learning the conversion from {best}")
    # Same words, so the ratio of speaking times is the pace to match.
    stretch = float(
        np.clip(_speech_s(clip, clip_rate) / _speech_s(base, base_rate), *STRETCH_RANGE)
    )
    person = audio.resample(clip, clip_rate, base_rate)
    conv: VoiceConversion | None
    try:
        conv = conversion.train(base, person, base_rate, strength=strength)
        note = conv.note
    except conversion.ConversionError as exc:
        # Not even pitch could be measured: the base voice and stretch still fit the
        # person. Said in the result, not hidden.
        conv, note = None, f"no voice conversion: {exc}"
    say((len(voices) + 1) / (len(voices) + 2), "Checking the matched voice is intelligible")
    plain, plain_rate = flite.speak(SCORE_TEXT, best, stretch)
    base_score = round(embedding.similarity(embedding.embed(plain, plain_rate), target), 4)
    base_wer = recognise.word_error_rate(SCORE_TEXT, recognise.transcribe(plain, plain_rate))
    score, wer = base_score, base_wer
    if conv is not None:
        conv, produced, wer = _intelligible_strength(conv, plain, plain_rate, base_wer)
        score = round(embedding.similarity(embedding.embed(produced, conv.sample_rate), target), 4)
    return VoiceMatch(
        engine="flite",
        base_voice=best,
        stretch=round(stretch, 3),
        candidates=candidates,
        score=score,
        base_score=base_score,
        conversion=conv,
        note=note,
        wer=round(wer, 3),
        base_wer=round(base_wer, 3),
        clip_embedding=target.round(5).tolist(),
    )
