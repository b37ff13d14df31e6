"""Does a video's mouth move with its speech? Measured the way a viewer judges it, with
nothing taken from the animator under test.

- The face is found on the still portrait by scikit-image's LBP frontal-face cascade (the
  product uses OpenCV's Haar cascades), and the mouth is placed by fixed proportions of
  that box, chosen here: the lower face, between the nose and the chin.
- Head motion is taken out before the mouth is looked at: each frame's upper face
  (brows, eyes, nose bridge: no mouth in it) is registered to the portrait's by phase
  correlation, and the mouth region is cut from the frame at that offset.
- Speech energy is the RMS of the audio in each frame's span, computed here.

`mouth_sync` then correlates how far the mouth is from its resting look with the energy
at lags of a few frames either way: a mouth that moves with the speech has its best
correlation at lag 0 (within a frame), and a strong one.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import numpy.typing as npt

Gray = npt.NDArray[np.float32]

# The lower face, as fractions of the detected face box: the cascade's box runs from
# the brows to about the chin, so the mouth and jaw lie in its bottom third.
MOUTH_BOX = (0.22, 0.62, 0.56, 0.42)  # x, y, w, h
# The upper face: brows, eyes and the top of the nose. The mouth is not in it, so a
# talking mouth does not move it, and it moves with the head.
UPPER_BOX = (0.10, 0.05, 0.80, 0.50)
MAX_LAG = 5  # frames searched either way
# Frames whose sound is this quiet (of the loudest frame's RMS) show the mouth at rest,
# when at least MIN_RESTING_FRAMES of them do.
QUIET = 0.02
MIN_RESTING_FRAMES = 3


@dataclass(frozen=True)
class Sync:
    """How a mouth's motion follows the speech energy."""

    lag: int  # frames the mouth trails the audio (negative: it leads) at best correlation
    r: float  # Pearson correlation at that lag
    r_at_zero: float
    motion: npt.NDArray[np.float64]  # per frame: mean |mouth - resting mouth|, 0-255 levels
    energy: npt.NDArray[np.float64]  # per frame: audio RMS

    def __str__(self) -> str:
        zero = f"r at lag 0 = {self.r_at_zero:.2f}"
        return f"best lag {self.lag:+d} frames, r = {self.r:.2f} ({zero})"


@functools.cache
def _cascade() -> object:
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def face_box(gray: Gray) -> tuple[int, int, int, int]:
    """The largest frontal face in a grayscale (0-255) image, as x, y, w, h."""
    side = min(gray.shape)
    found = _cascade().detect_multi_scale(  # type: ignore[attr-defined]
        img=gray / 255.0,
        scale_factor=1.1,
        step_ratio=1,
        min_size=(side // 5, side // 5),
        max_size=(side, side),
    )
    assert found, "no face found on the portrait"
    best = max(found, key=lambda d: d["width"] * d["height"])
    return int(best["c"]), int(best["r"]), int(best["width"]), int(best["height"])


def _part(face: tuple[int, int, int, int], part: tuple[float, ...]) -> tuple[int, int, int, int]:
    x, y, w, h = face
    return (
        round(x + part[0] * w),
        round(y + part[1] * h),
        round(part[2] * w),
        round(part[3] * h),
    )


def to_gray(rgb: npt.NDArray[np.uint8]) -> Gray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _cut(gray: Gray, box: tuple[int, int, int, int], dx: float, dy: float) -> Gray:
    x, y, w, h = box
    centre = (x + w / 2 - 0.5 + dx, y + h / 2 - 0.5 + dy)
    return cv2.getRectSubPix(gray, (w, h), centre)


def mouth_motion(
    portrait: npt.NDArray[np.uint8],
    frames: npt.NDArray[np.uint8],
    resting: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.float64]:
    """Per frame, how far the head-motion-compensated mouth region is from the mouth at
    rest: the median of the `resting` frames (the quiet ones) when there are a few, else
    the portrait's. An animator may give a mouth a rest shape of its own (a smile's lips
    closed between sentences); what must follow the speech is the motion away from it."""
    still = to_gray(portrait)
    face = face_box(still)
    upper, mouth = _part(face, UPPER_BOX), _part(face, MOUTH_BOX)
    ux, uy, uw, uh = upper
    reference = still[uy : uy + uh, ux : ux + uw]
    window = cv2.createHanningWindow((uw, uh), cv2.CV_32F)
    crops = np.empty((len(frames), mouth[3], mouth[2]), np.float32)
    for i, frame in enumerate(frames):
        gray = to_gray(frame)
        (dx, dy), _ = cv2.phaseCorrelate(reference, gray[uy : uy + uh, ux : ux + uw], window)
        crops[i] = _cut(gray, mouth, dx, dy)
    if resting is not None and resting.sum() >= MIN_RESTING_FRAMES:
        rest = np.median(crops[resting], axis=0)
    else:
        rest = _cut(still, mouth, 0.0, 0.0)
    return np.abs(crops - rest).mean(axis=(1, 2)).astype(np.float64)


def frame_energy(
    audio: npt.NDArray[np.float32], rate: int, fps: int, frames: int
) -> npt.NDArray[np.float64]:
    """RMS of the audio on screen with each frame (i/fps to (i+1)/fps)."""
    out = np.zeros(frames)
    for i in range(frames):
        span = audio[round(i * rate / fps) : round((i + 1) * rate / fps)].astype(np.float64)
        out[i] = np.sqrt((span**2).mean()) if len(span) else 0.0
    return out


def _corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def mouth_sync(
    portrait: npt.NDArray[np.uint8],
    frames: npt.NDArray[np.uint8],
    audio: npt.NDArray[np.float32],
    rate: int,
    fps: int,
) -> Sync:
    energy = frame_energy(audio, rate, fps, len(frames))
    motion = mouth_motion(portrait, frames, resting=energy <= QUIET * energy.max())
    n = len(frames)
    scores = {}
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        # lag > 0: frame i + lag shows what audio frame i says.
        a = motion[max(lag, 0) : n + min(lag, 0)]
        b = energy[max(-lag, 0) : n - max(lag, 0)]
        scores[lag] = _corr(a, b)
    best = max(scores, key=lambda k: scores[k])
    return Sync(best, scores[best], scores[0], motion, energy)


# --- a delivered MP4, as a person downloads it -------------------------------------------


def decode_video(path: Path) -> npt.NDArray[np.uint8]:
    """Every frame of the video track, RGB, as ffmpeg decodes it."""
    from myspinbot.media.video import probe

    info = probe(path)
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    frame = info.width * info.height * 3
    assert len(raw) % frame == 0, "a partial frame"
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def decode_audio(path: Path, rate: int = 16_000) -> npt.NDArray[np.float32]:
    """The audio track, mono float32 at `rate`, as ffmpeg decodes it."""
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0",
         "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return (np.frombuffer(raw, "<i2").astype(np.float32) / 32768).astype(np.float32)
