"""Forced alignment with pocketsphinx: real speech in, where each sound falls out."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from myspinbot.speech.align import AlignmentFailed, align, transcript_words
from tests.animate.lipsync_support import flite, needs_flite

TEXT = "Peter picked a bunch of purple plums, then Bob mopped the bumpy map."


@needs_flite
def test_phonemes_and_words_of_real_speech() -> None:
    speech, rate = flite(TEXT)
    pad = np.zeros(rate // 4, np.float32)
    audio = np.concatenate([pad, speech, pad])
    result = align(audio, rate, TEXT)
    assert [w.word for w in result.words] == transcript_words(TEXT)
    phones = [p.phone for p in result.phonemes if p.phone != "SIL"]
    # "peter picked" starts P IY T ER P IH K T; "map" ends M AE P.
    assert phones[:8] == ["P", "IY", "T", "ER", "P", "IH", "K", "T"]
    assert phones[-3:] == ["M", "AE", "P"]
    # Timings run forward without overlap, inside the audio, after the leading silence.
    starts = [p.start_s for p in result.phonemes]
    assert starts == sorted(starts)
    for a, b in zip(result.phonemes, result.phonemes[1:], strict=False):
        assert a.end_s <= b.start_s + 1e-6
    assert result.phonemes[-1].end_s <= len(audio) / rate
    # The first phone starts where the audio first becomes audible (10 ms windows).
    block = rate // 100
    levels = np.sqrt(np.mean(audio[: len(audio) // block * block].reshape(-1, block) ** 2, 1))
    onset = np.flatnonzero(levels > 0.02 * levels.max())[0] / 100
    first_sound = next(p for p in result.phonemes if p.phone != "SIL")
    assert abs(first_sound.start_s - onset) <= 0.06, (first_sound.start_s, onset)
    # The comma is a pause the speaker made; the aligner finds silence around it.
    then = next(w for w in result.words if w.word == "then")
    plums = next(w for w in result.words if w.word == "plums")
    assert then.start_s - plums.end_s >= 0.05


@needs_flite
def test_words_outside_the_dictionary_are_skipped_not_fatal() -> None:
    text = "Hello Zorblax, this is a test."
    speech, rate = flite(text)
    result = align(speech, rate, text)
    assert result.skipped == ["zorblax"]
    assert [w.word for w in result.words] == ["hello", "this", "is", "a", "test"]


def test_digits_are_read_one_by_one() -> None:
    assert transcript_words("Room 42, okay?") == ["room", "four", "two", "okay"]


def test_silence_cannot_be_aligned_to_words() -> None:
    with pytest.raises(AlignmentFailed):
        align(np.zeros(16_000 * 2, np.float32), 16_000, "hello world, this is speech")


def test_a_transcript_of_unknown_words_cannot_be_aligned() -> None:
    with pytest.raises(AlignmentFailed, match="dictionary"):
        align(np.zeros(16_000, np.float32), 16_000, "zorblax quux")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeaks_formant_voice_aligns_too() -> None:
    """espeak-ng is furthest from the acoustic model's speakers; it still aligns."""
    from myspinbot.settings import Settings
    from myspinbot.speech import get_engine

    speech = get_engine(Settings(tts_engine="espeak")).synthesize(TEXT, None)
    result = align(speech.samples, speech.sample_rate, TEXT)
    assert [w.word for w in result.words] == transcript_words(TEXT)
    phones = [p.phone for p in result.phonemes if p.phone != "SIL"]
    assert phones[:4] == ["P", "IY", "T", "ER"] and phones[-3:] == ["M", "AE", "P"]
