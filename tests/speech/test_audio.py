"""Reading piped WAVs and resampling, on synthetic tones whose content is known."""

from __future__ import annotations

import io
import struct
import wave
from typing import Any

import numpy as np
import pytest

from myspinbot.speech import Speech
from myspinbot.speech.audio import TRIM_BLOCK_S, TRIM_PAD_S, resample, trim_silence
from myspinbot.speech.wavstream import read_pcm16_wav
from myspinbot.voice import analysis
from myspinbot.voice.analysis import FloatArray, FrameGrid


def tone(f0: float, seconds: float, rate: int) -> FloatArray:
    t = np.arange(round(seconds * rate)) / rate
    return np.asarray(0.5 * np.sin(2 * np.pi * f0 * t))


def wav(samples: FloatArray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def as_if_piped(data: bytes) -> bytes:
    """The sizes a writer that cannot seek puts in the header (espeak-ng's placeholder)."""
    placeholder = struct.pack("<I", 0x7FFFF000)
    data_at = data.index(b"data")
    return data[:4] + placeholder + data[8 : data_at + 4] + placeholder + data[data_at + 8 :]


def test_piped_wav_is_read_to_the_end() -> None:
    x = tone(200, 0.5, 16_000)
    samples, rate = read_pcm16_wav(as_if_piped(wav(x, 16_000)))
    assert rate == 16_000
    assert len(samples) == len(x)
    np.testing.assert_allclose(samples, x, atol=2 / 32768)


def test_wav_that_is_not_pcm16_mono_is_refused() -> None:
    with pytest.raises(ValueError, match="RIFF"):
        read_pcm16_wav(b"not a wav at all")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"\0" * 400)
    with pytest.raises(ValueError, match="2 channels"):
        read_pcm16_wav(buf.getvalue())


def test_resampling_keeps_length_in_seconds_and_pitch() -> None:
    out = resample(tone(200, 1.0, 16_000), 16_000, 22_050)
    assert len(out) == pytest.approx(22_050, abs=50)
    grid = FrameGrid.for_rate(22_050)
    f0, _ = analysis.yin_pitch(grid.frames(out), grid)
    assert float(np.nanmedian(f0)) == pytest.approx(200, rel=0.01)


def test_trim_keeps_the_sound_and_a_short_pad() -> None:
    rate = 22_050
    silence = np.zeros(rate)
    x = np.concatenate([silence, tone(150, 1.0, rate), silence])
    trimmed = trim_silence(x, rate)
    assert len(trimmed) / rate == pytest.approx(1.0 + 2 * TRIM_PAD_S, abs=2 * TRIM_BLOCK_S)
    assert trim_silence(np.zeros(rate), rate).size == 0


def test_speech_stores_float32_and_refuses_stereo() -> None:
    samples: Any = tone(200, 0.1, 22_050)  # float64, as an engine might hand it over
    speech = Speech(samples=samples, sample_rate=22_050, words=None)
    assert speech.samples.dtype == np.float32
    assert speech.duration_s == pytest.approx(0.1)
    with pytest.raises(ValueError, match="mono"):
        Speech(samples=np.zeros((2, 100), dtype=np.float32), sample_rate=22_050, words=None)
