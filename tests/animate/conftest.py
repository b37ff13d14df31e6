"""Inputs shared by the animator tests: a prepared portrait and narration-like audio."""

from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from myspinbot.training.dataset import prepare_dataset
from tests.media_fixtures import RATE, face_photos, voice_clip


def pcm(wav: bytes) -> npt.NDArray[np.float32]:
    with wave.open(io.BytesIO(wav)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return (data.astype(np.float32) / 32768).astype(np.float32)


def silence(seconds: float) -> npt.NDArray[np.float32]:
    return np.zeros(round(RATE * seconds), dtype=np.float32)


@pytest.fixture(scope="session")
def portrait() -> Image.Image:
    """The astronaut photo as the pipeline hands it over: face-centred, 512 x 512."""
    prepared = prepare_dataset(face_photos(1), resolution=512, trigger_token="ohwx")
    return prepared.images[0].image


@pytest.fixture(scope="session")
def narration() -> npt.NDArray[np.float32]:
    """Two phrases of syllable-rate voiced sound with pauses around and between them."""
    return np.concatenate(
        [
            silence(0.3),
            pcm(voice_clip(seconds=2.0)),  # carries 0.5 s of silence at each end
            silence(1.0),
            pcm(voice_clip(f0=200.0, seconds=2.0, syllables_per_s=3.0)),
            silence(0.5),
        ]
    )
