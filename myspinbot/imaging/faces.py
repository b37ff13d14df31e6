"""Where the faces are in a photo, and the portrait square around one.

One detector for the whole platform: training crops its photos with it, the animator
starts its feature layout from it, and the stage step frames the video's portrait with
it - so a photo that trains is a photo that animates.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import cv2
import cv2.data
import numpy as np
from PIL import Image

# Face detection runs on a copy at most this large: the cascade's cost grows with the
# pixel count and a face in a portrait is far larger than the detector's 24 px window.
DETECT_MAX_SIDE = 1024

# Cascades tried in order, as (file, scaleFactor, minNeighbors). Tuned on variants of a
# portrait (crops, scales 160-1400 px, flips, brightness, +-15 degree tilts, JPEG q20)
# against the non-face images in scikit-image (textures, animals, objects):
# - alt2 is the more precise cascade: at 1.1/5 it found the face in every variant but
#   the 15 degree tilts and fired on none of the non-faces;
# - default, the fallback, is more tolerant of tilt but fires on a sideways cat photo
#   and on cell textures at minNeighbors <= 8; at 10 it still finds the tilted faces and
#   its only remaining hits are the heads on ancient coins (faces, after all).
# No histogram equalisation: it added false positives on dark textures (a moon surface)
# and gained nothing on dim or low-contrast portraits.
CASCADES: tuple[tuple[str, float, int], ...] = (
    ("haarcascade_frontalface_alt2.xml", 1.1, 5),
    ("haarcascade_frontalface_default.xml", 1.1, 10),
)
# A face smaller than this share of the short side is background, not the subject, and
# too small to train on; small windows are also where cascades hallucinate faces.
MIN_FACE_FRACTION = 0.08
MIN_FACE_PX = 24

# Crop geometry. A Haar box spans eyebrows to mouth, about the face's width. The crop is
# CROP_SCALE times the box, so the face fills ~45% of its side - the framing portrait
# LoRA trainers use: head, hair, neck and the top of the shoulders. The crop centre sits
# CROP_SHIFT_UP box-heights above the box centre, because hair rises further above the
# box than the chin falls below it.
CROP_SCALE = 2.2
CROP_SHIFT_UP = 0.1


class Box(NamedTuple):
    """A rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


@functools.cache
def cascade(filename: str) -> cv2.CascadeClassifier:
    """One of OpenCV's bundled Haar cascades, loaded once per process."""
    classifier = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, filename))
    if classifier.empty():
        raise RuntimeError(f"OpenCV's {filename} could not be loaded")
    return classifier


def find_faces(image: Image.Image) -> list[Box]:
    """Faces in an RGB image, in its pixel coordinates; the first cascade that finds any."""
    gray = np.asarray(image.convert("L"))
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    min_side = max(MIN_FACE_PX, round(MIN_FACE_FRACTION * min(gray.shape)))
    for filename, scale_factor, min_neighbors in CASCADES:
        found = cascade(filename).detectMultiScale(
            gray,
            scaleFactor=scale_factor,
            minNeighbors=min_neighbors,
            minSize=(min_side, min_side),
        )
        if len(found):
            return [Box(*(round(int(v) / scale) for v in rect)) for rect in found]
    return []


def largest_face(image: Image.Image) -> Box | None:
    """The biggest face in the photo (the subject, when there are several); None if none."""
    return max(find_faces(image), key=lambda b: b.width * b.height, default=None)


def crop_around(face: Box, width: int, height: int) -> Box:
    """The square crop for `face`, moved (and if need be shrunk) to lie inside the image."""
    side = min(round(face.width * CROP_SCALE), width, height)
    cx, cy = face.center
    cy -= CROP_SHIFT_UP * face.height
    left = min(max(round(cx - side / 2), 0), width - side)
    top = min(max(round(cy - side / 2), 0), height - side)
    return Box(left, top, side, side)


__all__ = ["MIN_FACE_PX", "Box", "cascade", "crop_around", "find_faces", "largest_face"]
