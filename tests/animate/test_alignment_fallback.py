"""The generate pipeline's speech step: the phoneme timeline comes from aligning the
audio to the narration; when that cannot be done the video is still made, the mouth
follows loudness, and the result says why."""

from __future__ import annotations

import numpy as np

from myspinbot.generation.pipeline import _aligned
from myspinbot.speech.models import PhonemeTiming, Speech
from tests.animate.lipsync_support import flite, needs_flite


@needs_flite
def test_synthesized_speech_gets_its_phoneme_timeline() -> None:
    samples, rate = flite("Bob popped a big blue balloon.")
    timed, note = _aligned(Speech(samples, rate, None), "Bob popped a big blue balloon.")
    assert note is None and timed.phonemes
    assert [w.word for w in timed.words or []] == ["bob", "popped", "a", "big", "blue", "balloon"]
    assert timed.samples is samples or np.array_equal(timed.samples, samples)


def test_audio_that_cannot_be_aligned_falls_back_to_loudness_with_a_note() -> None:
    silence = Speech(np.zeros(16_000, np.float32), 16_000, None)
    timed, note = _aligned(silence, "Hello there.")
    assert timed.phonemes is None
    assert note is not None and "could not be aligned" in note and "loudness" in note


def test_no_transcript_means_loudness_only() -> None:
    speech = Speech(np.zeros(16_000, np.float32), 16_000, None)
    timed, note = _aligned(speech, None)
    assert timed is speech and note is not None and "No transcript" in note


def test_an_engines_own_timeline_is_kept() -> None:
    own = [PhonemeTiming("HH", 0.0, 0.1), PhonemeTiming("AY", 0.1, 0.4)]
    speech = Speech(np.zeros(8_000, np.float32), 16_000, None, own)
    timed, note = _aligned(speech, "Hi.")
    assert timed is speech and note is None
