"""What a speech engine returns: the audio, and where each word and phoneme falls in it
when known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from myspinbot.errors import PermanentError
from myspinbot.voice.profile import encode_wav


class SpeechError(PermanentError):
    """The text cannot be spoken (nothing pronounceable, engine missing or misconfigured)."""


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme of the narration: ARPAbet without stress digits, upper case ("AA", "P",
    "M"), or "SIL" for a pause. The animator turns these into mouth shapes."""

    phone: str
    start_s: float
    end_s: float


# eq=False: comparing two arrays elementwise yields an array, not a bool, so the generated
# __eq__ would raise; identity comparison is the honest default for a block of audio.
@dataclass(frozen=True, eq=False)
class Speech:
    samples: npt.NDArray[np.float32]  # mono, in [-1, 1]
    sample_rate: int
    words: list[WordTiming] | None  # None when the engine gives no timings
    phonemes: list[PhonemeTiming] | None = None  # None when nothing aligned the audio

    def __post_init__(self) -> None:
        # Engines work in float64 and the video side wants float32: convert once, here,
        # rather than trust every engine to remember.
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", np.asarray(self.samples, dtype=np.float32))
        if self.samples.ndim != 1:
            raise ValueError(f"speech must be mono (1-D samples), got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def wav_bytes(self) -> bytes:
        """The audio as a 16-bit PCM mono WAV file."""
        return encode_wav(self.samples.astype(np.float64), self.sample_rate)
