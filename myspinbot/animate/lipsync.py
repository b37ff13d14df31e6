"""The default talking-head animator: lip shapes per phoneme on a landmark-driven warp.

Needs no generative weights, only MediaPipe's face-mesh model (landmarks.py): the mesh
places the lips, jaw and eyes on the portrait once; the narration's phoneme timeline
(forced alignment, myspinbot.speech.align) becomes a mouth pose per frame
(visemes.py); the pose warps the lower face (mesh.py). Blinks and the small head drift
are the weight-free animator's (motion.py, warp.py), placed by the landmarks instead
of a Haar box. Nothing is generated, so identity, eyes and background stay the photo's.

Without a phoneme timeline (the aligner failed, or a recording came without its
transcript) the mouth opens with loudness alone. A portrait with no face the mesh can
find (a stylised render, noise) is animated by the weight-free animator rather than
refused; `last_mode` says which path ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from myspinbot.animate.envelope import mouth_openings, to_mono_float
from myspinbot.animate.face import FaceLayout
from myspinbot.animate.landmarks import FaceLandmarks, FaceMesh
from myspinbot.animate.mesh import MouthRig
from myspinbot.animate.motion import blink_closures, head_offsets
from myspinbot.animate.visemes import Poses, Viseme, poses_from_loudness, poses_from_phonemes
from myspinbot.animate.warp import HeadMotion, PatchSet, eye_patches
from myspinbot.animate.weightfree import WeightFreeAnimator, frame_count
from myspinbot.training.dataset import Box

Frame = npt.NDArray[np.uint8]
Mode = Literal["phonemes", "loudness", "weightfree"]

# Eye boxes for the blink warp, from an eye's landmark contour: the warp's proportions
# were tuned on boxes about 1.3 eye-widths wide and 0.55 as tall as wide.
EYE_BOX_WIDTH = 1.3
EYE_BOX_ASPECT = 0.55


def _box(x0: float, y0: float, x1: float, y1: float) -> Box:
    return Box(round(x0), round(y0), max(round(x1 - x0), 1), max(round(y1 - y0), 1))


def layout_from(landmarks: FaceLandmarks) -> FaceLayout:
    """The landmarks as the box layout the blink and head warps take."""
    oval = landmarks.jaw
    (fx0, fy0), (fx1, fy1) = oval.min(axis=0), oval.max(axis=0)
    eyes = []
    for contour in landmarks.eyes:
        cx, cy = contour.mean(axis=0)
        w = float(np.ptp(contour[:, 0])) * EYE_BOX_WIDTH
        h = w * EYE_BOX_ASPECT
        eyes.append(_box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    lips = np.concatenate([landmarks.lips_outer_upper, landmarks.lips_outer_lower])
    (mx0, my0), (mx1, my1) = lips.min(axis=0), lips.max(axis=0)
    return FaceLayout(
        face=_box(fx0, fy0, fx1, fy1),
        mouth=_box(mx0, my0, mx1, my1),
        eyes=(eyes[0], eyes[1]),
        detected=True,
    )


class LandmarkAnimator:
    """Lip-synced animation of a portrait from its narration's phonemes (or loudness)."""

    name = "landmark"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.last_landmarks: FaceLandmarks | None = None
        self.last_layout: FaceLayout | None = None
        self.last_poses: Poses | None = None
        self.last_mode: Mode | None = None

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

        The portrait is analysed and every pose computed here, before the first frame
        is asked for, so bad input fails at the call."""
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        samples = to_mono_float(audio)
        frames = self.frame_count(len(samples) / sample_rate, fps)
        rgb = portrait.convert("RGB")
        still = np.ascontiguousarray(np.asarray(rgb))
        landmarks = FaceMesh().locate(still)
        self.last_landmarks = landmarks
        if landmarks is None:
            fallback = WeightFreeAnimator(seed=self.seed)
            result = fallback.animate(rgb, samples, sample_rate, fps, words, phonemes)
            self.last_layout, self.last_poses, self.last_mode = (
                fallback.last_layout,
                None,
                "weightfree",
            )
            return result

        layout = layout_from(landmarks)
        self.last_layout = layout
        loudness = mouth_openings(samples, sample_rate, fps, frames)
        if phonemes:
            poses = poses_from_phonemes(phonemes, loudness, fps, frames)
            self.last_mode = "phonemes"
        else:
            poses = poses_from_loudness(loudness)
            self.last_mode = "loudness"
        self.last_poses = poses
        closures = blink_closures(frames, fps, self.seed)
        # The head moves while the person talks and settles in pauses (motion.py).
        dx, dy = head_offsets(loudness, fps, layout.face.height, self.seed)
        rig = MouthRig(still, landmarks)
        eyes = [eye_patches(still, eye) for eye in layout.eyes]
        head = HeadMotion(still.shape, layout)
        return self._frames(still, poses, closures, dx, dy, rig, eyes, head)

    @staticmethod
    def _frames(
        still: Frame,
        poses: Poses,
        closures: npt.NDArray[np.float32],
        dx: npt.NDArray[np.float32],
        dy: npt.NDArray[np.float32],
        rig: MouthRig,
        eyes: list[PatchSet],
        head: HeadMotion,
    ) -> Iterator[Frame]:
        for i in range(len(poses)):
            frame = still.copy()
            pose = Viseme(
                float(poses.open[i]),
                float(poses.width[i]),
                float(poses.tuck[i]),
                float(poses.rest[i]),
            )
            rig.render(frame, pose)
            for eye in eyes:
                eye.paste(frame, float(closures[i]))
            head.apply(frame, float(dx[i]), float(dy[i]))
            yield frame
