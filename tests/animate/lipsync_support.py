"""Inputs and an independent measuring tool for the lip-sync tests.

Portraits: two real, public-domain photos that install from PyPI (tests/fixtures/
SOURCES.md): Grace Hopper with her mouth closed (matplotlib's sample data) and Eileen
Collins smiling with her teeth showing (scikit-image's astronaut), each prepared as the
pipeline prepares a photo (face-centred, 512 px).

Narration: Debian's flite reading a text full of p, b and m, force-aligned to the text
by pocketsphinx, so the test knows when each sound is spoken.

Measure: MediaPipe's face mesh run on the *decoded output video*, frame by frame: it
knows nothing of the animator's internal state, only the pixels a viewer sees.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from myspinbot.animate.landmarks import Crop, FaceLandmarks, FaceMesh, crop_from
from myspinbot.media.video import VideoEncoder
from myspinbot.speech.align import Alignment, align
from myspinbot.training.dataset import prepare_dataset
from tests.media_fixtures import face_photos

FPS = 25
SIZE = 512
BILABIAL_TEXT = (
    "Bob popped a big blue balloon. Pam bought maps and a pumpkin pie. "
    "Mom baked apple bread, and Paul played the bass by the pool."
)
OPEN_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY"}
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")


def prepared(photo: bytes, name: str = "photo.png") -> Image.Image:
    return prepare_dataset([(name, photo)], resolution=SIZE, trigger_token="ohwx").images[0].image


def closed_mouth_photo() -> bytes:
    """Grace Hopper, US Navy official portrait (public domain), from matplotlib."""
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return Path(str(path)).read_bytes()


def smiling_photo() -> bytes:
    """Eileen Collins, NASA portrait (public domain), from scikit-image; teeth showing."""
    return face_photos(1)[0][1]


def flite(text: str) -> tuple[npt.NDArray[np.float32], int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["flite", "-t", text, "-o", str(path)], check=True, timeout=60)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return (pcm.astype(np.float32) / 32768).astype(np.float32), rate


@dataclass(frozen=True)
class Narration:
    samples: npt.NDArray[np.float32]
    rate: int
    alignment: Alignment

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


def bilabial_narration() -> Narration:
    """flite reading BILABIAL_TEXT, with half a second of silence either side."""
    speech, rate = flite(BILABIAL_TEXT)
    pad = np.zeros(rate // 2, dtype=np.float32)
    samples = np.concatenate([pad, speech, pad])
    return Narration(samples, rate, align(samples, rate, BILABIAL_TEXT))


def wav_bytes(samples: npt.NDArray[np.float32], rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def encode(frames: Iterator[npt.NDArray[np.uint8]], path: Path, wav: Path, size: int) -> None:
    with VideoEncoder(path, width=size, height=size, fps=FPS, audio_wav=wav) as video:
        for frame in frames:
            video.write(frame)


def decode(path: Path) -> npt.NDArray[np.uint8]:
    """Every frame of a video, RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


@dataclass(frozen=True)
class Measured:
    """The face mesh of every frame of a video."""

    reference: FaceLandmarks  # on the still portrait
    frames: list[FaceLandmarks]

    @property
    def gaps(self) -> npt.NDArray[np.float64]:
        return np.array([f.inner_gap for f in self.frames])


def measure(portrait: npt.NDArray[np.uint8], frames: npt.NDArray[np.uint8]) -> Measured:
    mesh = FaceMesh()
    reference = mesh.locate(portrait)
    assert reference is not None, "the measuring mesh finds no face on the portrait"
    crop: Crop = crop_from(reference)
    found = []
    for frame in frames:
        landmarks = mesh.measure(frame, crop)
        assert landmarks is not None, "the measuring mesh lost the face"
        # The crop stays the portrait's: the head drifts only a few pixels, well inside
        # it, and a fixed crop keeps the mesh's estimates comparable frame to frame.
        found.append(landmarks)
    return Measured(reference, found)


def bilabial_groups(alignment: Alignment) -> list[tuple[float, float]]:
    """Spans of consecutive p/b/m sounds (one closure each), in seconds."""
    groups: list[tuple[float, float]] = []
    for p in alignment.phonemes:
        if p.phone not in {"P", "B", "M"}:
            continue
        if groups and p.start_s - groups[-1][1] < 0.03:
            groups[-1] = (groups[-1][0], p.end_s)
        else:
            groups.append((p.start_s, p.end_s))
    return groups


def frames_during(start_s: float, end_s: float, count: int) -> range:
    """Frames on screen at any moment of [start_s, end_s]."""
    first = max(int(np.floor(start_s * FPS)), 0)
    last = min(int(np.ceil(end_s * FPS)), count)
    return range(first, max(last, first + 1))
