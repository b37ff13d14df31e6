"""Speaker embeddings: how alike two voices sound, as a speaker-verification model hears it.

The model is Resemblyzer's GE2E speaker encoder (Wan et al. 2018, "Generalized end-to-end
loss for speaker verification"; Apache-2.0): a 3-layer LSTM over 40-band mel spectra of
1.6 s windows, whose outputs are averaged into one unit vector per clip. Its trained
weights ship inside the `resemblyzer` wheel (pretrained.pt, 17 MB), so nothing is fetched
at run time.

Only the weights file is taken from the package: importing `resemblyzer` itself pulls in
librosa, numba and webrtcvad just for its front end. The front end here (a 25 ms / 10 ms
STFT and Slaney-style mel filters, power not log, as the model was trained on) is written
with numpy, and the network is rebuilt with torch from the same shapes.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from myspinbot.voice.analysis import FloatArray

EMBED_RATE = 16_000
_N_FFT = 400  # 25 ms
_HOP = 160  # 10 ms
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s windows, the length the encoder was trained on
# Windows start every 1/1.3 s (Resemblyzer's default rate); a last window counts when
# at least 75 % of it is audio.
_PARTIAL_STEP = round(EMBED_RATE / 1.3 / _HOP)
_MIN_COVERAGE = 0.75
# The encoder was trained on clips normalised to -30 dBFS.
_TARGET_DBFS = -30.0

_lock = threading.Lock()


class EncoderMissing(RuntimeError):
    """The `resemblyzer` package (which carries the weights) is not installed."""


def weights_path() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise EncoderMissing(
            "The speaker encoder's weights come with the Python package `resemblyzer`; "
            "install it (pip install --no-deps resemblyzer)."
        )
    return Path(spec.origin).parent / "pretrained.pt"


@lru_cache(maxsize=1)
def _encoder() -> Any:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(_N_MELS, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            out: torch.Tensor = raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)
            return out

    model = Encoder()
    state = torch.load(weights_path(), map_location="cpu", weights_only=False)["model_state"]
    # The checkpoint also holds the similarity scale used only in training.
    model.load_state_dict({k: v for k, v in state.items() if k.split(".")[0] in {"lstm", "linear"}})
    model.eval()
    return model


@lru_cache(maxsize=1)
def _mel_filters() -> FloatArray:
    """Slaney mel filterbank (linear below 1 kHz, logarithmic above, area-normalised)."""

    def hz_to_mel(f: FloatArray) -> FloatArray:
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.asarray(np.where(f >= 1000.0, log, lin))

    def mel_to_hz(m: FloatArray) -> FloatArray:
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.asarray(np.where(m >= 15.0, log, lin))

    fft_freqs = np.linspace(0, EMBED_RATE / 2, _N_FFT // 2 + 1)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(EMBED_RATE / 2)), _N_MELS + 2)
    )
    lower = (fft_freqs[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    upper = (edges[2:, None] - fft_freqs[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return np.asarray(weights * (2.0 / (edges[2:] - edges[:-2]))[:, None])


def _mel_spectrogram(x: FloatArray) -> FloatArray:
    """(frames, 40) mel power spectra of 16 kHz audio, frames centred every 10 ms."""
    padded = np.pad(x, _N_FFT // 2)
    n = 1 + (len(padded) - _N_FFT) // _HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP][:n]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return np.asarray(power @ _mel_filters().T)


def embed(samples: FloatArray, sample_rate: int) -> FloatArray:
    """A unit-length 256-d speaker embedding of a mono clip (any rate; silence trimmed)."""
    import torch

    from myspinbot.speech.audio import resample

    x = resample(np.asarray(samples, dtype=np.float64), sample_rate, EMBED_RATE)
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    if rms <= 0:
        raise ValueError("cannot embed a silent clip")
    x = x * (10 ** (_TARGET_DBFS / 20) / rms)
    n_frames = len(x) // _HOP + 1
    starts = list(range(0, max(1, n_frames - _PARTIAL_FRAMES + _PARTIAL_STEP + 1), _PARTIAL_STEP))
    last_cover = (len(x) - starts[-1] * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if last_cover < _MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    need = (starts[-1] + _PARTIAL_FRAMES) * _HOP
    if need > len(x):
        x = np.pad(x, (0, need - len(x)))
    mel = _mel_spectrogram(x)
    batch = np.stack([mel[s : s + _PARTIAL_FRAMES] for s in starts]).astype(np.float32)
    with _lock, torch.no_grad():
        partials = _encoder()(torch.from_numpy(batch)).numpy().astype(np.float64)
    mean = partials.mean(axis=0)
    return np.asarray(mean / np.linalg.norm(mean))


def similarity(a: FloatArray, b: FloatArray) -> float:
    """Cosine similarity of two embeddings (1 = the same voice as the model hears it)."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
