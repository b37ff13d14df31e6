"""Face landmarks: MediaPipe's face mesh (468 points) on a still image, run by OpenCV.

The two models are the ones MediaPipe ships (Apache-2.0) in its `mediapipe==0.10.21`
wheel: `face_detection_short_range.tflite` (BlazeFace, finds the face and its eyes) and
`face_landmark.tflite` (the mesh, on a 192 px crop rotated upright by the eyes). Both
run through `cv2.dnn.readNetFromTFLite`, so MediaPipe's runtime (jax, protobuf and an
opencv-contrib that would replace our OpenCV) is never imported: the wheel is installed
with `pip install --no-deps` for its model files only (scripts/lib.sh), and found here
without importing the package.

The portrait is a still, so it is located once: a detection, a mesh on the detection's
crop, then a second mesh on the crop the first mesh gives (MediaPipe's own tracking step,
which centres and levels the face better than the detector's box). `measure` runs the
mesh alone from a known crop, which is how a video of that face is followed frame by
frame (the tests measure lip gaps on the output video this way).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from myspinbot.errors import PermanentError

Points = npt.NDArray[np.float32]  # N x 2, image pixels (x, y)

MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
DETECTOR_FILE = "modules/face_detection/face_detection_short_range.tflite"
MESH_FILE = "modules/face_landmark/face_landmark.tflite"

DETECTOR_SIZE = 128
MESH_SIZE = 192
# BlazeFace short-range anchors (MediaPipe's SsdAnchorsCalculator options for this model):
# a 16x16 grid with 2 anchors per cell at stride 8, then 8x8 with 6 per cell at stride 16.
ANCHOR_GRIDS = ((16, 2), (8, 6))
MIN_DETECTION_SCORE = 0.5
# A mesh whose face-presence score is lower is not a face (MediaPipe tracks at 0.5).
MIN_PRESENCE = 0.5
# The mesh crop: the face box (detector's, or the mesh's own extent) grown by this factor,
# as MediaPipe does, so the whole head outline fits in the crop.
CROP_SCALE = 1.5

# Indices into the 468-point canonical face mesh (MediaPipe's face_mesh_connections).
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
    377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# Image-left eye (the person's right) and image-right eye, each a closed contour.
EYE_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_IMAGE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327)
NOSE_TIP = 1
CHIN = 152
# The lips' mid-line pairs (inner upper, inner lower) from the centre outwards: the gap
# between the lips is measured over these.
INNER_PAIRS = ((13, 14), (82, 87), (312, 317))
MOUTH_CORNERS = (61, 291)


class LandmarkModelMissing(PermanentError):
    """MediaPipe's model files are not installed."""


@dataclass(frozen=True)
class FaceLandmarks:
    """The face mesh of one image: 468 points in its pixel coordinates, and named parts."""

    points: Points
    score: float  # the mesh's face-presence probability

    def _take(self, index: tuple[int, ...]) -> Points:
        return np.asarray(self.points[list(index)], dtype=np.float32)

    @property
    def lips_outer_upper(self) -> Points:
        return self._take(LIPS_OUTER_UPPER)

    @property
    def lips_outer_lower(self) -> Points:
        return self._take(LIPS_OUTER_LOWER)

    @property
    def lips_inner_upper(self) -> Points:
        return self._take(LIPS_INNER_UPPER)

    @property
    def lips_inner_lower(self) -> Points:
        return self._take(LIPS_INNER_LOWER)

    @property
    def jaw(self) -> Points:
        """The face outline, forehead to chin and back: its lower half is the jaw line."""
        return self._take(FACE_OVAL)

    @property
    def nose(self) -> Points:
        return self._take(NOSE)

    @property
    def eyes(self) -> tuple[Points, Points]:
        """Image-left eye, image-right eye (closed contours)."""
        return self._take(EYE_IMAGE_LEFT), self._take(EYE_IMAGE_RIGHT)

    @property
    def mouth_width(self) -> float:
        a, b = self.points[list(MOUTH_CORNERS)]
        return float(np.hypot(*(b - a)))

    @property
    def face_height(self) -> float:
        """Eye line to chin, in pixels: the scale of the face."""
        eyes = (self.points[33] + self.points[263]) / 2
        return float(np.hypot(*(self.points[CHIN] - eyes)))

    @property
    def inner_gap(self) -> float:
        """How far apart the lips are, in pixels: the mean gap between the inner upper
        and inner lower lip along the middle of the mouth (0 when they touch)."""
        gaps = [self.points[lo, 1] - self.points[up, 1] for up, lo in INNER_PAIRS]
        return float(max(np.mean(gaps), 0.0))


@dataclass(frozen=True)
class Crop:
    """A square, rotated region of an image: what the mesh model is shown."""

    cx: float
    cy: float
    size: float
    angle: float  # radians; the face is rotated by -angle to stand upright

    def matrix(self, side: int) -> npt.NDArray[np.float64]:
        """The affine map from image pixels to the `side` x `side` crop."""
        scale = side / self.size
        cos, sin = math.cos(self.angle) * scale, math.sin(self.angle) * scale
        # Rotate about the crop's centre by -angle, then centre in the output square.
        return np.array(
            [
                [cos, sin, side / 2 - cos * self.cx - sin * self.cy],
                [-sin, cos, side / 2 + sin * self.cx - cos * self.cy],
            ]
        )


def model_dir() -> Path:
    """Where the MediaPipe wheel's model files are; LandmarkModelMissing if absent.

    The package is located, not imported: with `--no-deps` its imports would fail, and
    we need only its data files."""
    spec = importlib.util.find_spec("mediapipe")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        root = Path(location)
        if (root / MESH_FILE).is_file() and (root / DETECTOR_FILE).is_file():
            return root
    raise LandmarkModelMissing(
        "MediaPipe's face-landmark model is not installed; install its model files with "
        f"`pip install --no-deps {MEDIAPIPE_WHEEL}` (scripts/test and scripts/up do)."
    )


def _sigmoid(logits: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    # tanh form: no overflow for the large negative logits of empty anchors.
    return np.asarray(0.5 * (1.0 + np.tanh(logits.astype(np.float64) / 2.0)))


@functools.cache
def _anchors() -> npt.NDArray[np.float32]:
    centres = []
    for grid, per_cell in ANCHOR_GRIDS:
        for y in range(grid):
            for x in range(grid):
                centres.extend([((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell)
    return np.asarray(centres, dtype=np.float32)


class FaceMesh:
    """The detector and mesh networks, loaded once; not thread-safe (OpenCV nets are
    not), so use one per thread."""

    def __init__(self) -> None:
        root = model_dir()
        self._detector = cv2.dnn.readNetFromTFLite(str(root / DETECTOR_FILE))
        self._mesh = cv2.dnn.readNetFromTFLite(str(root / MESH_FILE))

    def locate(self, rgb: npt.NDArray[np.uint8]) -> FaceLandmarks | None:
        """The largest face's mesh in an RGB image, or None if there is no face."""
        crop = self.detect(rgb)
        if crop is None:
            return None
        first = self.measure(rgb, crop)
        if first is None:
            return None
        refined = self.measure(rgb, crop_from(first))
        return refined if refined is not None else first

    def detect(self, rgb: npt.NDArray[np.uint8]) -> Crop | None:
        """The mesh crop around the most confident face, from BlazeFace; None if none."""
        height, width = rgb.shape[:2]
        side = max(height, width)
        # Letterbox to a square so the face keeps its proportions, as MediaPipe does.
        square = np.zeros((side, side, 3), dtype=np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = rgb[..., :3]
        small = cv2.resize(square, (DETECTOR_SIZE, DETECTOR_SIZE), interpolation=cv2.INTER_AREA)
        blob = (small.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        self._detector.setInput(np.ascontiguousarray(blob))
        scores_raw, boxes_raw = self._detector.forward(["classificators", "regressors"])
        scores = _sigmoid(scores_raw.reshape(-1))
        best = int(np.argmax(scores))
        if scores[best] < MIN_DETECTION_SCORE:
            return None
        raw = boxes_raw.reshape(-1, 16)[best] / DETECTOR_SIZE
        anchor = _anchors()[best]
        cx, cy = raw[0] + anchor[0], raw[1] + anchor[1]
        box_w, box_h = raw[2], raw[3]
        # Keypoints 0 and 1 are the eyes (image left, image right): they level the crop.
        eye_a = raw[4:6] + anchor
        eye_b = raw[6:8] + anchor
        angle = math.atan2(float(eye_b[1] - eye_a[1]), float(eye_b[0] - eye_a[0]))
        return Crop(
            cx=float(cx) * side - left,
            cy=float(cy) * side - top,
            size=float(max(box_w, box_h)) * side * CROP_SCALE,
            angle=angle,
        )

    def measure(self, rgb: npt.NDArray[np.uint8], crop: Crop) -> FaceLandmarks | None:
        """The mesh of the face inside `crop`; None if the model sees no face there."""
        forward = crop.matrix(MESH_SIZE)
        patch = cv2.warpAffine(
            np.ascontiguousarray(rgb[..., :3]),
            forward,
            (MESH_SIZE, MESH_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        blob = (patch.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        self._mesh.setInput(np.ascontiguousarray(blob))
        presence_raw, mesh_raw = self._mesh.forward(["conv2d_31", "conv2d_21"])
        presence = float(_sigmoid(presence_raw.reshape(-1)[:1])[0])
        if presence < MIN_PRESENCE:
            return None
        local = mesh_raw.reshape(-1, 3)[:, :2].astype(np.float64)
        inverse = cv2.invertAffineTransform(forward)
        points = local @ inverse[:, :2].T + inverse[:, 2]
        return FaceLandmarks(points=points.astype(np.float32), score=presence)


def crop_from(landmarks: FaceLandmarks) -> Crop:
    """The mesh crop that frames these landmarks (MediaPipe's landmarks-to-ROI step)."""
    left_eye, right_eye = landmarks.points[33], landmarks.points[263]
    angle = math.atan2(float(right_eye[1] - left_eye[1]), float(right_eye[0] - left_eye[0]))
    # Extent in the face's own (levelled) frame, so a tilted head is not over-cropped.
    cos, sin = math.cos(angle), math.sin(angle)
    pts = landmarks.points.astype(np.float64)
    u = pts[:, 0] * cos + pts[:, 1] * sin
    v = -pts[:, 0] * sin + pts[:, 1] * cos
    cu, cv_ = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    size = max(u.max() - u.min(), v.max() - v.min()) * CROP_SCALE
    return Crop(cx=cu * cos - cv_ * sin, cy=cu * sin + cv_ * cos, size=float(size), angle=angle)


def locate_landmarks(rgb: npt.NDArray[np.uint8]) -> FaceLandmarks | None:
    """The face mesh of an RGB image (None if no face), with freshly loaded models."""
    return FaceMesh().locate(rgb)
