"""Signal measurements on a mono speech clip: level, silence, pitch (YIN) and syllable nuclei.

Everything works on one frame grid: frames of `frame_len` samples every `hop` samples
(10 ms), so a frame's level, pitch and voicing line up by index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

HOP_S = 0.010

# The pitch search range covers adult and child speech (a deep bass speaks near 60 Hz,
# a child near 400 Hz) with margin; it also sets the frame length below.
FMIN_HZ = 50.0
FMAX_HZ = 500.0

# Levels are floored here so digital silence has a finite level.
SILENCE_FLOOR_DB = -120.0

# The clip's "loud" level is this percentile of its frame levels: the loud vowels, yet
# still speech when speech is only a few percent of a long, mostly silent recording.
LOUD_PERCENTILE = 99.0
# A frame is speech when it is no more than this far below the loud level: wide enough
# to keep soft consonants and word ends, narrow enough to drop room tone on an ordinary
# phone recording.
SPEECH_RANGE_DB = 40.0
# ... and clearly above the clip's own noise floor (10th percentile)...
NOISE_MARGIN_DB = 6.0
# ... but a clip with little silence must not push the threshold into the speech.
MIN_HEADROOM_DB = 15.0

# YIN: a period candidate is accepted when its cumulative-mean-normalised difference
# dips below this (0 = perfectly periodic). The YIN paper uses 0.1 on clean speech;
# 0.25 keeps most voiced frames of low, rough voices and of compressed (MP3/AAC)
# recordings; the median over frames absorbs the occasional wrong frame this admits.
YIN_THRESHOLD = 0.25

# Syllable nuclei (after de Jong & Wempe 2009, "Praat script to detect syllable nuclei"):
# a nucleus is a level peak, voiced, at most this far below the loudest speech...
NUCLEUS_RANGE_DB = 25.0
# ... separated from the previous nucleus by a dip at least this deep.
NUCLEUS_MIN_DIP_DB = 2.0
# A peak counts as voiced when a voiced frame lies within this many frames (30 ms):
# the level peak of a syllable can sit just beside the frames YIN marks voiced.
NUCLEUS_VOICED_SLACK = 3


@dataclass(frozen=True)
class FrameGrid:
    sample_rate: int
    hop: int
    frame_len: int
    window: int  # YIN's integration window; frame_len = window + the longest lag
    min_lag: int
    max_lag: int

    @classmethod
    def for_rate(cls, sample_rate: int) -> FrameGrid:
        max_lag = int(np.ceil(sample_rate / FMIN_HZ))
        # One longest period of integration: enough for a stable estimate at the lowest
        # pitch while keeping frames short (40 ms at 50 Hz) so pitch changes are tracked.
        window = max_lag
        return cls(
            sample_rate=sample_rate,
            hop=round(sample_rate * HOP_S),
            frame_len=window + max_lag,
            window=window,
            min_lag=int(np.floor(sample_rate / FMAX_HZ)),
            max_lag=max_lag,
        )

    def frames(self, x: FloatArray) -> FloatArray:
        """Frames starting every hop; the tail is zero-padded so the last samples count."""
        n = max(1, int(np.ceil(max(len(x) - self.frame_len, 0) / self.hop)) + 1)
        padded = np.zeros((n - 1) * self.hop + self.frame_len)
        padded[: len(x)] = x
        view = np.lib.stride_tricks.sliding_window_view(padded, self.frame_len)
        return np.asarray(view[:: self.hop])


def levels_db(frames: FloatArray) -> FloatArray:
    """RMS level of each frame in dBFS (full scale = 1.0)."""
    power = np.mean(frames**2, axis=1)
    floor = 10 ** (SILENCE_FLOOR_DB / 10)
    return np.asarray(10 * np.log10(np.maximum(power, floor)))


def loud_level_db(levels: FloatArray) -> float:
    return float(np.percentile(levels, LOUD_PERCENTILE))


def speech_threshold_db(levels: FloatArray) -> float:
    """The level above which a frame is taken as speech, relative to this clip."""
    loud = loud_level_db(levels)
    floor = float(np.percentile(levels, 10))
    threshold = max(loud - SPEECH_RANGE_DB, floor + NOISE_MARGIN_DB)
    return min(threshold, loud - MIN_HEADROOM_DB)


def speech_bounds(active: BoolArray, grid: FrameGrid, n_samples: int) -> tuple[int, int]:
    """Sample range from the first to the last active frame ((0, 0) when none is)."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return 0, 0
    start = int(idx[0]) * grid.hop
    end = min(int(idx[-1]) * grid.hop + grid.frame_len, n_samples)
    return start, end


def power_mean_db(levels: FloatArray) -> float:
    """Level of the frames taken together (energy average, not the mean of dB values)."""
    if levels.size == 0:
        return SILENCE_FLOOR_DB
    return float(10 * np.log10(np.mean(10 ** (levels / 10))))


# Frames are analysed in blocks so a 30 s clip never holds all its spectra at once.
_YIN_BLOCK = 256


def yin_pitch(frames: FloatArray, grid: FrameGrid) -> tuple[FloatArray, FloatArray]:
    """YIN (de Cheveigné & Kawahara 2002) per frame: (f0 in Hz, aperiodicity 0..1+).

    f0 is NaN where no period candidate dips below YIN_THRESHOLD (unvoiced or silent).
    """
    f0 = np.full(len(frames), np.nan)
    aperiodicity = np.ones(len(frames))
    for start in range(0, len(frames), _YIN_BLOCK):
        block = slice(start, start + _YIN_BLOCK)
        cmnd = _cumulative_mean_normalised_difference(frames[block], grid)
        f0[block], aperiodicity[block] = _pick_period(cmnd, grid)
    return f0, aperiodicity


def _cumulative_mean_normalised_difference(frames: FloatArray, grid: FrameGrid) -> FloatArray:
    """YIN steps 2-3: d(tau) = sum_j (x_j - x_{j+tau})^2 over the window, normalised."""
    w, max_lag = grid.window, grid.max_lag
    n_fft = 1 << int(np.ceil(np.log2(grid.frame_len + w)))
    # Cross term sum_j x_j x_{j+tau} for all lags at once, by FFT correlation of the
    # window against the whole frame (n_fft is long enough that nothing wraps around).
    spec_frame = np.fft.rfft(frames, n_fft, axis=1)
    spec_window = np.fft.rfft(frames[:, :w], n_fft, axis=1)
    cross = np.fft.irfft(np.conj(spec_window) * spec_frame, n_fft, axis=1)[:, : max_lag + 1]
    # Energy of the window and of the window shifted by tau, from a running sum.
    cumsq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    energy_shifted = cumsq[:, lags + w] - cumsq[:, lags]
    energy_window = cumsq[:, w : w + 1]
    diff = np.maximum(energy_window + energy_shifted - 2 * cross, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = diff[:, 1:] * lags[1:] / running
    # A silent frame gives 0/0: call it aperiodic rather than perfectly periodic.
    return np.asarray(np.where(np.isfinite(cmnd), cmnd, 1.0))


def _pick_period(cmnd: FloatArray, grid: FrameGrid) -> tuple[FloatArray, FloatArray]:
    """YIN steps 4-5: the first local minimum below the threshold, refined parabolically."""
    lo, hi = grid.min_lag, grid.max_lag
    inner = cmnd[:, lo:hi]
    # A trough is lower than its left neighbour and no higher than its right one.
    trough = (inner < cmnd[:, lo - 1 : hi - 1]) & (inner <= cmnd[:, lo + 1 : hi + 1])
    candidate = trough & (inner < YIN_THRESHOLD)
    found = candidate.any(axis=1)
    # The *first* qualifying trough, not the deepest: deeper troughs at multiples of the
    # period are what make naive autocorrelation pick an octave too low.
    lag = lo + np.argmax(candidate, axis=1)
    rows = np.arange(len(cmnd))
    left, mid, right = cmnd[rows, lag - 1], cmnd[rows, lag], cmnd[rows, lag + 1]
    curvature = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, 0.5 * (left - right) / curvature, 0.0)
    period = lag + np.clip(shift, -0.5, 0.5)
    f0 = np.where(found, grid.sample_rate / period, np.nan)
    aperiodicity = np.where(found, mid, inner.min(axis=1))
    return f0, aperiodicity


def syllable_nuclei(levels: FloatArray, voiced: BoolArray, threshold_db: float) -> list[int]:
    """Frame indices of syllable nuclei: voiced level peaks separated by real dips."""
    if levels.size < 3:
        return []
    floor = max(threshold_db, float(np.percentile(levels, 99)) - NUCLEUS_RANGE_DB)
    inner = levels[1:-1]
    is_peak = (inner > levels[:-2]) & (inner >= levels[2:]) & (inner > floor)
    nuclei: list[int] = []
    for i in (np.flatnonzero(is_peak) + 1).tolist():
        if not nuclei:
            nuclei.append(i)
            continue
        prev = nuclei[-1]
        dip = float(levels[prev : i + 1].min())
        if min(levels[prev], levels[i]) - dip >= NUCLEUS_MIN_DIP_DB:
            nuclei.append(i)
        elif levels[i] > levels[prev]:
            # No dip between them: one syllable, whose peak is the louder of the two.
            nuclei[-1] = i
    slack = NUCLEUS_VOICED_SLACK
    return [i for i in nuclei if voiced[max(0, i - slack) : i + slack + 1].any()]
