"""Loudness to mouth opening: closed in silence, open with speech, whatever the level."""

from __future__ import annotations

import numpy as np
import pytest

from myspinbot.animate.envelope import frame_rms, mouth_openings, to_mono_float

RATE, FPS = 16_000, 25


def tone(seconds: float, level: float) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return (level * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def test_silence_keeps_the_mouth_closed() -> None:
    assert not mouth_openings(np.zeros(RATE, np.float32), RATE, FPS, 25).any()


def test_the_mouth_opens_with_sound_and_shuts_after_it() -> None:
    audio = np.concatenate([tone(0.4, 0), tone(0.4, 0.5), tone(0.4, 0)])
    opening = mouth_openings(audio, RATE, FPS, 30)
    assert not opening[:10].any()  # before the sound
    assert opening[12:20].min() > 0.9  # during it: fully open (it is the peak)
    assert not opening[24:].any()  # a few frames after it: exactly closed again


def test_louder_opens_wider_and_overall_level_does_not_matter() -> None:
    audio = np.concatenate([tone(0.4, 0.1), tone(0.4, 0.5)])
    opening = mouth_openings(audio, RATE, FPS, 20)
    assert 0.3 < opening[5:9].mean() < opening[15:19].mean() - 0.2
    # A quiet recording of the same speech moves the mouth the same way.
    quiet = mouth_openings(audio * 0.1, RATE, FPS, 20)
    np.testing.assert_allclose(quiet, opening, atol=1e-3)


def test_frames_past_the_audio_are_silent() -> None:
    rms = frame_rms(tone(0.2, 0.5), RATE, FPS, 10)
    assert len(rms) == 10
    assert rms[:5].min() > 0.3 and not rms[5:].any()


def test_audio_is_normalised_to_mono_float() -> None:
    pcm = np.array([0, 16384, -32767], dtype=np.int16)
    np.testing.assert_allclose(to_mono_float(pcm), [0, 0.5, -1], atol=1e-4)
    assert to_mono_float(np.array([0.5, np.nan])).tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="mono"):
        to_mono_float(np.zeros((10, 2)))
