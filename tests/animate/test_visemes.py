"""Phoneme timings to mouth poses: Rhubarb's shapes, reached in time, eased between."""

from __future__ import annotations

import numpy as np

from myspinbot.animate.visemes import PRESSED, poses_from_loudness, poses_from_phonemes
from myspinbot.speech.models import PhonemeTiming as P

FPS = 25


def timeline(*parts: tuple[str, float]) -> list[P]:
    """Phonemes back to back from t = 0, each (phone, duration)."""
    out, t = [], 0.0
    for phone, duration in parts:
        out.append(P(phone, round(t, 3), round(t + duration, 3)))
        t += duration
    return out


def poses(phones: list[P], loud: float = 1.0):  # type: ignore[no-untyped-def]
    frames = round(phones[-1].end_s * FPS)
    return poses_from_phonemes(phones, np.full(frames, loud, np.float32), FPS, frames)


def frame_at(t: float) -> int:
    return int(t * FPS)


def test_a_short_m_between_open_vowels_still_closes_the_lips() -> None:
    # "ama" with a 50 ms m: shorter than two frames, and it must still be seen shut.
    phones = timeline(("SIL", 0.4), ("AA", 0.2), ("M", 0.05), ("AA", 0.2), ("SIL", 0.4))
    p = poses(phones)
    m = phones[2]
    during = range(frame_at(m.start_s - 0.03), frame_at(m.end_s) + 1)
    assert min(p.open[i] for i in during) < PRESSED
    assert all(p.rest[i] < 0.1 for i in during)  # closed, not the resting portrait
    # ...and the vowels around it open wide.
    assert p.open[frame_at(0.5)] > 0.6 and p.open[frame_at(0.75)] > 0.6


def test_the_lips_close_before_the_plosive_is_released() -> None:
    phones = timeline(("SIL", 0.4), ("AA", 0.3), ("P", 0.08), ("AA", 0.3), ("SIL", 0.4))
    p = poses(phones)
    # Already shut 20 ms before the aligner's "p" begins (anticipation), and through it.
    assert p.open[frame_at(phones[2].start_s - 0.02)] < PRESSED
    assert p.open[frame_at(phones[2].start_s + 0.04)] < PRESSED
    # The vowel before it is open until shortly before.
    assert p.open[frame_at(phones[2].start_s - 0.1)] > 0.5


def test_shapes_per_sound() -> None:
    cases = {
        "AA": lambda o, w, t: o > 0.7,  # open
        "IY": lambda o, w, t: w > 0.6 and o < 0.4,  # wide
        "UW": lambda o, w, t: w < -0.6,  # rounded
        "F": lambda o, w, t: t > 0.6 and o < 0.15,  # lower lip to the teeth
    }
    for phone, check in cases.items():
        phones = timeline(("SIL", 0.4), (phone, 0.3), ("SIL", 0.4))
        p = poses(phones)
        i = frame_at(0.55)
        assert check(p.open[i], p.width[i], p.tuck[i]), (phone, p.open[i], p.width[i], p.tuck[i])


def test_a_diphthong_moves_between_its_two_shapes() -> None:
    phones = timeline(("SIL", 0.4), ("AY", 0.4), ("SIL", 0.4))  # "eye": ah -> ee
    p = poses(phones)
    start, end = frame_at(0.45), frame_at(0.75)
    assert p.open[start] > p.open[end] + 0.3
    assert p.width[end] > p.width[start] + 0.4


def test_silence_is_the_idle_mouth_lips_together() -> None:
    """Rhubarb's X: before, between and after phrases the lips rest together."""
    phones = timeline(("SIL", 0.6), ("AA", 0.3), ("SIL", 1.5), ("AA", 0.3), ("SIL", 0.6))
    p = poses(phones)
    for t in (0.1, 1.6, 3.2):
        i = frame_at(t)
        assert p.open[i] < PRESSED and p.width[i] == 0 and p.rest[i] == 0
    assert p.open[frame_at(0.75)] > 0.6


def test_a_breath_between_words_is_no_pause() -> None:
    phones = timeline(("SIL", 0.4), ("AA", 0.3), ("SIL", 0.08), ("AA", 0.3), ("SIL", 0.4))
    p = poses(phones)
    assert p.open[frame_at(0.74)] > 0.3  # the mouth does not shut for 80 ms of breath


def test_transitions_ease_between_vowels() -> None:
    phones = timeline(("SIL", 0.4), ("AA", 0.4), ("IY", 0.4), ("SIL", 0.4))
    p = poses(phones)
    span = slice(frame_at(0.5), frame_at(1.1))
    # Several in-between frames from ah to ee, not one jump.
    steps = np.abs(np.diff(p.width[span]))
    assert steps.max() < 0.5 and (steps > 0.02).sum() >= 3


def test_loudness_scales_the_opening() -> None:
    phones = timeline(("SIL", 0.4), ("AA", 0.3), ("SIL", 0.4))
    assert (
        poses(phones, loud=1.0).open[frame_at(0.55)]
        > poses(phones, loud=0.2).open[frame_at(0.55)] + 0.3
    )


def test_unknown_phones_are_tolerated() -> None:
    phones = timeline(("SIL", 0.2), ("XX", 0.2), ("AA1", 0.2), ("SIL", 0.2))
    p = poses(phones)
    assert len(p) == 20 and p.open[frame_at(0.5)] > 0.5


def test_without_phonemes_the_mouth_follows_loudness() -> None:
    loud = np.array([0, 0, 0.5, 1.0, 0.2, 0, 0], np.float32)
    p = poses_from_loudness(loud)
    assert p.open[0] == 0 and p.open[-1] == 0
    assert p.open[3] > p.open[2] > p.open[4] > 0
