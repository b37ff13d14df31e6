"""Shaping synthesized audio for the video: one sample rate, no silence at either end."""

from __future__ import annotations

import numpy as np

from myspinbot.media.ffmpeg import run_ffmpeg
from myspinbot.voice import analysis
from myspinbot.voice.analysis import FloatArray
from myspinbot.voice.profile import SILENT_DBFS

# Kept either side of the first and last sound, so onsets and word ends are not clipped
# while the video (as long as the speech) does not open or close on a still, silent face.
TRIM_PAD_S = 0.03
TRIM_BLOCK_S = 0.005


def resample(samples: FloatArray, from_rate: int, to_rate: int) -> FloatArray:
    """Mono samples at `from_rate` -> the same sound at `to_rate` (ffmpeg's resampler)."""
    if from_rate == to_rate:
        return samples
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()
    args = ["-f", "s16le", "-ar", str(from_rate), "-ac", "1", "-i", "pipe:0"]
    args += ["-ar", str(to_rate), "-f", "s16le", "pipe:1"]
    out = run_ffmpeg(args, input=pcm)
    return np.frombuffer(out[: len(out) // 2 * 2], dtype="<i2").astype(np.float64) / 32768


def trim_silence(samples: FloatArray, sample_rate: int) -> FloatArray:
    """Drop leading and trailing silence, keeping TRIM_PAD_S around the sound.

    Empty when nothing in it is audible. Silence is judged relative to the clip's own
    loud level (the voice module's rule), so quiet and loud engines trim alike.
    """
    # Short, non-overlapping blocks rather than the pitch grid's 40 ms frames: a block's
    # length is how far past the sound a bound can land.
    block = max(1, round(TRIM_BLOCK_S * sample_rate))
    n_blocks = -(-len(samples) // block)
    if n_blocks == 0:
        return samples
    padded = np.zeros(n_blocks * block)
    padded[: len(samples)] = samples
    levels = analysis.levels_db(padded.reshape(n_blocks, block))
    if analysis.loud_level_db(levels) < SILENT_DBFS:
        return samples[:0]
    active = np.flatnonzero(levels > analysis.speech_threshold_db(levels))
    pad = round(TRIM_PAD_S * sample_rate)
    start = max(0, int(active[0]) * block - pad)
    end = min(len(samples), (int(active[-1]) + 1) * block + pad)
    return samples[start:end]
