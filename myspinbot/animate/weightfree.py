"""The built-in talking-head animator: needs no model weights, runs on a CPU.

It warps the portrait itself: the jaw drops with the loudness of the speech, the eyes
blink every few seconds and the head drifts slightly while talking. Nothing is
generated, so the person stays exactly who they are and the background never changes;
what it cannot do is shape the lips to the individual sounds (that takes a neural
animator such as wav2lip). Word timings are therefore not used.

Two choices keep the rest of the picture calm. The head moves only inside a feathered
ellipse around it (the background and shoulders are never touched), and only while the
person speaks: its drift fades out within a second of a pause, so pauses are still
frames but for a blink. A portrait without a detectable face is animated with the
default layout (see face.py) rather than refused; `last_layout.detected` tells.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from myspinbot.animate.envelope import mouth_openings, to_mono_float
from myspinbot.animate.face import FaceLayout, locate_face
from myspinbot.animate.motion import blink_closures, head_offsets
from myspinbot.animate.warp import HeadMotion, PatchSet, eye_patches, mouth_patches

Frame = npt.NDArray[np.uint8]


def frame_count(duration_s: float, fps: int) -> int:
    """Frames that show `duration_s` of audio at `fps`: the nearest whole number, at least 1."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    return max(1, round(max(duration_s, 0.0) * fps))


class WeightFreeAnimator:
    """Animates a portrait from the loudness of its narration."""

    name = "weightfree"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        # The layout of the portrait last animated; `detected` says whether a face was
        # found or the default layout was used.
        self.last_layout: FaceLayout | None = None

    def frame_count(self, duration_s: float, fps: int) -> int:
        return frame_count(duration_s, fps)

    def animate(
        self,
        portrait: Image.Image,
        audio: npt.ArrayLike,
        sample_rate: int,
        fps: int,
        words: Sequence[Any] | None = None,
        phonemes: Sequence[Any] | None = None,
    ) -> Iterator[Frame]:
        """Frames (H x W x 3 uint8 RGB, the portrait's size) for the whole of `audio`.

        The portrait is analysed and the warps are prepared here, before the first
        frame is asked for, so bad input fails at the call and `last_layout` is set
        as soon as this returns.
        """
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        samples = to_mono_float(audio)
        frames = self.frame_count(len(samples) / sample_rate, fps)
        rgb = portrait.convert("RGB")
        still = np.ascontiguousarray(np.asarray(rgb))
        layout = locate_face(rgb)
        self.last_layout = layout

        openings = mouth_openings(samples, sample_rate, fps, frames)
        closures = blink_closures(frames, fps, self.seed)
        dx, dy = head_offsets(openings, fps, layout.face.height, self.seed)
        mouth = mouth_patches(still, layout)
        eyes = [eye_patches(still, eye) for eye in layout.eyes]
        head = HeadMotion(still.shape, layout)
        return self._frames(still, openings, closures, dx, dy, mouth, eyes, head)

    @staticmethod
    def _frames(
        still: Frame,
        openings: npt.NDArray[np.float32],
        closures: npt.NDArray[np.float32],
        dx: npt.NDArray[np.float32],
        dy: npt.NDArray[np.float32],
        mouth: PatchSet,
        eyes: list[PatchSet],
        head: HeadMotion,
    ) -> Iterator[Frame]:
        for i in range(len(openings)):
            frame = still.copy()
            mouth.paste(frame, float(openings[i]))
            for eye in eyes:
                eye.paste(frame, float(closures[i]))
            head.apply(frame, float(dx[i]), float(dy[i]))
            yield frame
