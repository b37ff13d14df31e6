"""From speech audio to how far the mouth is open in each video frame.

The weight-free animator has no phonemes to go on, only loudness: a syllable's vowel is
its loudest part and the mouth is widest there. Loudness is measured per frame, on a
dB scale (perceived loudness is logarithmic, and consonants sit 10-25 dB under vowels),
and mapped between a silence floor and the speech peak.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# The mouth is fully open at this percentile of the speaking frames' loudness rather
# than at the maximum, so that one shout or click does not leave the rest half-closed.
PEAK_PERCENTILE = 95.0
# Loudness range mapped onto closed..open. Below peak - range the mouth is closed: that
# is breath and room noise, and about where unvoiced consonants fade out.
DYNAMIC_RANGE_DB = 30.0
# Anything quieter than this is silence whatever the peak (-60 dBFS is the noise floor
# of a clean 16-bit recording; TTS silence is digital zero).
ABSOLUTE_FLOOR_DB = -60.0
# Attack and release time constants: the jaw opens quickly on an onset but closes a
# little slower, which reads as natural instead of a flickering meter.
ATTACK_S = 0.02
RELEASE_S = 0.04
# Openings under this snap to exactly closed, so that silence renders still frames
# (the release smoothing would otherwise leave a never-ending sub-pixel tremor).
CLOSED_BELOW = 0.04


def to_mono_float(audio: npt.ArrayLike) -> FloatArray:
    """`audio` as 1-D float32 in [-1, 1]; integer PCM is scaled by its type's range."""
    array = np.asarray(audio)
    if array.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), not an array of shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        scale = float(np.iinfo(array.dtype).max)
        return (array.astype(np.float32) / scale).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"audio must hold numbers, not {array.dtype}")
    return np.nan_to_num(array.astype(np.float32, copy=False))


def frame_rms(audio: FloatArray, sample_rate: int, fps: int, frames: int) -> FloatArray:
    """Root-mean-square level of the audio shown with each frame.

    Frame i is on screen from i/fps to (i+1)/fps, so it gets the samples of that span;
    a frame past the end of the audio gets silence.
    """
    if sample_rate <= 0 or fps <= 0:
        raise ValueError(f"sample_rate and fps must be positive, not {sample_rate} and {fps}")
    edges = np.round(np.arange(frames + 1) * (sample_rate / fps)).astype(np.int64)
    edges = np.minimum(edges, len(audio))
    squares = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    counts = np.diff(edges)
    sums = squares[edges[1:]] - squares[edges[:-1]]
    mean = np.divide(sums, counts, out=np.zeros(frames), where=counts > 0)
    return np.asarray(np.sqrt(np.maximum(mean, 0.0)), dtype=np.float32)


def follow(signal: FloatArray, fps: int, rise_s: float, fall_s: float) -> FloatArray:
    """One-pole follower per frame: rises with time constant `rise_s`, falls with `fall_s`."""
    up = 1.0 - math.exp(-1.0 / (fps * rise_s))
    down = 1.0 - math.exp(-1.0 / (fps * fall_s))
    out = np.empty_like(signal)
    level = 0.0
    for i, value in enumerate(signal.tolist()):
        level += (up if value > level else down) * (value - level)
        out[i] = level
    return out


def mouth_openings(audio: FloatArray, sample_rate: int, fps: int, frames: int) -> FloatArray:
    """Mouth opening per frame, 0 (closed) to 1 (fully open); exactly 0 in silence."""
    rms = frame_rms(audio, sample_rate, fps, frames)
    db = 20.0 * np.log10(np.maximum(rms, 1e-9))
    speaking = db > ABSOLUTE_FLOOR_DB
    if not speaking.any():
        return np.zeros(frames, dtype=np.float32)
    peak = float(np.percentile(db[speaking], PEAK_PERCENTILE))
    floor = max(peak - DYNAMIC_RANGE_DB, ABSOLUTE_FLOOR_DB)
    if peak - floor < 1.0:  # speech barely above the absolute floor: treat it as a murmur
        floor = peak - 1.0
    target = np.clip((db - floor) / (peak - floor), 0.0, 1.0).astype(np.float32)
    # Fast attack, slower release: the jaw opens on an onset, closes a little later.
    opening = follow(target, fps, ATTACK_S, RELEASE_S)
    opening[opening < CLOSED_BELOW] = 0.0
    return opening
