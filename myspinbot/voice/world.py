"""The WORLD vocoder (Morise et al. 2016; `pyworld`, MIT): speech <-> (F0, spectral envelope,
aperiodicity), so pitch and timbre can be changed separately and the speech re-synthesized.

pyworld's package __init__ imports `pkg_resources` only to read its own version, and the
setuptools this project pins no longer has it; the compiled extension inside the package
is complete on its own, so it is loaded directly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np

from myspinbot.errors import PermanentError
from myspinbot.voice.analysis import FloatArray

# Conversion runs at 16 kHz: the base voices speak at 16 kHz, the speaker encoder and the
# recogniser listen at 16 kHz, and WORLD's cost grows with the rate.
WORLD_RATE = 16_000
FRAME_PERIOD_MS = 5.0
# Mel-cepstrum-like coding of the envelope (WORLD's own): enough dimensions to carry
# formants and voice quality, few enough for a mapping learnt from a 5-30 s clip.
CODED_DIMS = 40
F0_FLOOR_HZ = 60.0
F0_CEIL_HZ = 500.0


class WorldMissing(PermanentError):
    """The `pyworld` package is not installed."""


@lru_cache(maxsize=1)
def pyworld() -> ModuleType:
    spec = importlib.util.find_spec("pyworld")
    if spec is None or spec.origin is None:
        raise WorldMissing(
            "Voice conversion needs the WORLD vocoder: install the Python package `pyworld`."
        )
    folder = Path(spec.origin).parent
    ext = next(folder.glob("pyworld.*.so"), None)
    if ext is None:
        raise WorldMissing(f"The `pyworld` package in {folder} has no compiled extension.")
    ext_spec = importlib.util.spec_from_file_location("pyworld.pyworld", ext)
    assert ext_spec is not None and ext_spec.loader is not None
    module = importlib.util.module_from_spec(ext_spec)
    ext_spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class WorldFeatures:
    f0: FloatArray  # Hz per frame, 0 where unvoiced
    coded: FloatArray  # (frames, CODED_DIMS) coded spectral envelope; column 0 is energy
    aperiodicity: FloatArray  # (frames, fft_size // 2 + 1)
    fft_size: int


def analyse(samples: FloatArray, sample_rate: int = WORLD_RATE) -> WorldFeatures:
    """WORLD analysis: DIO + StoneMask pitch (far faster than Harvest, good on clean TTS
    and close-talk speech), CheapTrick envelope, D4C aperiodicity."""
    pw = pyworld()
    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, t = pw.dio(
        x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=FRAME_PERIOD_MS
    )
    f0 = pw.stonemask(x, f0, t, sample_rate)
    sp = pw.cheaptrick(x, f0, t, sample_rate)
    ap = pw.d4c(x, f0, t, sample_rate)
    coded = pw.code_spectral_envelope(sp, sample_rate, CODED_DIMS)
    return WorldFeatures(
        f0=np.asarray(f0),
        coded=np.asarray(coded),
        aperiodicity=np.asarray(ap),
        fft_size=(sp.shape[1] - 1) * 2,
    )


def synthesize(features: WorldFeatures, sample_rate: int = WORLD_RATE) -> FloatArray:
    pw = pyworld()
    sp = pw.decode_spectral_envelope(
        np.ascontiguousarray(features.coded), sample_rate, features.fft_size
    )
    y = pw.synthesize(
        np.ascontiguousarray(features.f0),
        sp,
        np.ascontiguousarray(features.aperiodicity),
        sample_rate,
        FRAME_PERIOD_MS,
    )
    return np.asarray(y, dtype=np.float64)
