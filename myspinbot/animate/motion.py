"""The idle life of a face: when the eyes blink and how the head drifts, frame by frame.

Both are deterministic for a given seed, so rendering the same narration twice gives
the same video (a retried job, a cached preview).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from myspinbot.animate.envelope import follow

FloatArray = npt.NDArray[np.float32]

# People blink every 2-10 s, more often while talking; 3-5 s apart reads as attentive.
BLINK_INTERVAL_S = (3.0, 5.0)
FIRST_BLINK_S = (1.0, 3.0)
# A blink takes ~150 ms: the lid drops fast and rises slower.
BLINK_CLOSE_S = 0.06
BLINK_OPEN_S = 0.09

# Head drift, as a fraction of the face box height: ~1.2% is 2-3 px on a 512 px
# portrait. Sums of slow incommensurate sines never visibly repeat; all are under
# 0.35 Hz, so the head drifts rather than wobbles.
SWAY_AMPLITUDE = 0.012
SWAY_X = ((0.6, 0.17), (0.4, 0.29))  # (weight, Hz)
SWAY_Y = ((0.5, 0.23),)
# The head dips a little with emphasis: the phrase-level loudness, not each syllable.
NOD_WEIGHT = 0.5
NOD_SMOOTHING_S = 0.25
# The head moves while the person talks and settles when they stop: motion follows a
# speaking indicator that rises over ACTIVITY_RISE_S and decays over ACTIVITY_FALL_S.
# A still head in pauses also keeps silent frames still.
ACTIVITY_RISE_S = 0.3
ACTIVITY_FALL_S = 0.6


def blink_closures(frames: int, fps: int, seed: int = 0) -> FloatArray:
    """Eye closure per frame, 0 (open) to 1 (shut)."""
    rng = np.random.default_rng(seed)
    times = np.arange(frames, dtype=np.float64) / fps
    closure = np.zeros(frames, dtype=np.float32)
    at = rng.uniform(*FIRST_BLINK_S)
    while frames and at < times[-1] + BLINK_OPEN_S:
        # The peak falls on a frame, so every blink is seen fully shut at least once.
        peak = round(at * fps) / fps
        before = 1.0 - (peak - times) / BLINK_CLOSE_S
        after = 1.0 - (times - peak) / BLINK_OPEN_S
        shape = np.where(times <= peak, before, after)
        closure = np.maximum(closure, np.clip(shape, 0.0, 1.0).astype(np.float32))
        at += rng.uniform(*BLINK_INTERVAL_S)
    return closure


def head_offsets(
    openings: FloatArray, fps: int, face_height: float, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Head offset (dx, dy) in pixels per frame, given the mouth openings."""
    rng = np.random.default_rng(seed + 1)
    t = np.arange(len(openings), dtype=np.float64) / fps
    amplitude = SWAY_AMPLITUDE * face_height
    activity = follow((openings > 0).astype(np.float32), fps, ACTIVITY_RISE_S, ACTIVITY_FALL_S)

    def sway(parts: tuple[tuple[float, float], ...]) -> npt.NDArray[np.float64]:
        total = np.zeros_like(t)
        for weight, hz in parts:
            total += weight * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
        return total

    emphasis = follow(openings, fps, NOD_SMOOTHING_S, NOD_SMOOTHING_S)
    dx = amplitude * activity * sway(SWAY_X)
    dy = amplitude * (activity * sway(SWAY_Y) + NOD_WEIGHT * emphasis)
    return dx.astype(np.float32), dy.astype(np.float32)
