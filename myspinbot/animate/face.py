"""Where the face, mouth and eyes are in a portrait.

The face is found with the same tuned Haar cascades the training set is cropped with.
Eyes and mouth start from fixed proportions of the face box, which hold for any frontal
portrait, and are then nudged by OpenCV's eye and smile cascades when those agree with
the proportions. The cascades alone are not trusted: the smile cascade fires on chins
and nostrils, the eye cascade on eyebrows and glasses frames, so a hit far from where
the proportions put the feature is ignored. Robust beats clever: a feature a few
pixels off still animates convincingly, a feature on the wrong part of the face does
not.

The line where the lips part matters more than the rest, since that is where the mouth
opens: a cut through the upper teeth of a smile looks wrong. So it is placed from the
image: in a smile, at the bite line inside the band of teeth (bright, unsaturated rows);
with closed lips, at the seam (the darkest thin row); otherwise the estimate stands.

No face at all (a stylised render, a random-weight model's noise) is not an error: the
video must still be made, so a default layout is used - the face box is the centred
60% of the image - and `FaceLayout.detected` is False so the caller can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from myspinbot.imaging.faces import Box, cascade, largest_face

# Share of the image the default face box covers when no face is detected.
FALLBACK_FACE_FRACTION = 0.6

# Feature geometry as fractions of a Haar face box (which spans brows to just under
# the mouth), measured on frontal portraits: eye centres at 38% of the height and 29% /
# 71% of the width; the line between the lips at 80% of the height.
EYE_Y = 0.38
EYE_X = (0.29, 0.71)
EYE_W = 0.22
EYE_H = 0.12
MOUTH_Y = 0.80
MOUTH_W = 0.40
MOUTH_H = 0.16

# Teeth: rows whose saturation is under this share of the skin's. Lips are redder than
# skin, teeth much greyer; shadows are darker, not greyer. The upper teeth show more
# than the lower ones, so the bite line sits BITE_LINE of the way down the teeth.
TEETH_SATURATION = 0.65
MIN_TEETH_ROWS = 0.12  # of the mouth box height, so that one grey row is not teeth
BITE_LINE = 0.55
# A lip seam is at least this much darker (0-255) than the rows a quarter of the mouth
# box height above and below it.
MIN_SEAM_DEPTH = 8.0

# A cascade hit is accepted only this close to the geometric estimate (fraction of the
# face box side); beyond it the hit is on some other feature.
EYE_TOLERANCE = 0.10
MOUTH_TOLERANCE = 0.08

# Eye and smile cascades, with minNeighbors high enough that skin texture does not fire.
EYE_CASCADE = ("haarcascade_eye.xml", 1.1, 5)
SMILE_CASCADE = ("haarcascade_smile.xml", 1.1, 20)


@dataclass(frozen=True)
class FaceLayout:
    """A portrait's face and features, in its pixel coordinates."""

    face: Box
    mouth: Box  # the lips; the line where they meet is its vertical centre
    eyes: tuple[Box, Box]  # image-left, image-right
    detected: bool  # False: no face was found and this is the default layout

    @property
    def lip_line(self) -> float:
        return self.mouth.y + self.mouth.height / 2


def _box_at(cx: float, cy: float, width: float, height: float) -> Box:
    return Box(round(cx - width / 2), round(cy - height / 2), round(width), round(height))


def _fallback_face(width: int, height: int) -> Box:
    w, h = width * FALLBACK_FACE_FRACTION, height * FALLBACK_FACE_FRACTION
    return _box_at(width / 2, height / 2, w, h)


def _detect(
    gray: npt.NDArray[np.uint8], region: Box, features: tuple[str, float, int], min_side: int
) -> list[tuple[float, float]]:
    """Centres of a cascade's hits inside `region` of `gray`, in image coordinates."""
    x0, y0 = max(region.x, 0), max(region.y, 0)
    x1 = min(region.x + region.width, gray.shape[1])
    y1 = min(region.y + region.height, gray.shape[0])
    if x1 - x0 < min_side or y1 - y0 < min_side:
        return []
    filename, scale_factor, min_neighbors = features
    found = cascade(filename).detectMultiScale(
        gray[y0:y1, x0:x1],
        scaleFactor=scale_factor,
        minNeighbors=min_neighbors,
        minSize=(min_side, min_side),
    )
    return [(x0 + x + w / 2, y0 + y + h / 2) for x, y, w, h in (map(int, r) for r in found)]


def _nearest(
    hits: list[tuple[float, float]], expected: tuple[float, float], tolerance: float
) -> tuple[float, float] | None:
    best = min(hits, key=lambda p: np.hypot(p[0] - expected[0], p[1] - expected[1]), default=None)
    if best is None or np.hypot(best[0] - expected[0], best[1] - expected[1]) > tolerance:
        return None
    return best


def locate_face(image: Image.Image) -> FaceLayout:
    """The face and its features in `image`; the default layout if no face is found."""
    width, height = image.size
    face = largest_face(image)
    if face is None:
        return _geometric_layout(_fallback_face(width, height), detected=False)
    layout = _geometric_layout(face, detected=True)
    rgb = np.asarray(image.convert("RGB"))
    return _refined(rgb, layout)


def _geometric_layout(face: Box, *, detected: bool) -> FaceLayout:
    fx, fy, fw, fh = face
    eyes = (
        _box_at(fx + EYE_X[0] * fw, fy + EYE_Y * fh, EYE_W * fw, EYE_H * fh),
        _box_at(fx + EYE_X[1] * fw, fy + EYE_Y * fh, EYE_W * fw, EYE_H * fh),
    )
    mouth = _box_at(fx + fw / 2, fy + MOUTH_Y * fh, MOUTH_W * fw, MOUTH_H * fh)
    return FaceLayout(face=face, mouth=mouth, eyes=eyes, detected=detected)


def _refined(rgb: npt.NDArray[np.uint8], layout: FaceLayout) -> FaceLayout:
    """Move eyes and mouth onto what the image shows, where it agrees with the geometry."""
    gray = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    fx, fy, fw, fh = layout.face
    side = (fw + fh) / 2
    eye_hits = _detect(
        gray, Box(fx, fy, fw, round(fh * 0.6)), EYE_CASCADE, max(8, round(0.12 * side))
    )
    eyes = list(layout.eyes)
    for i, eye in enumerate(eyes):
        hit = _nearest(eye_hits, eye.center, EYE_TOLERANCE * side)
        if hit is not None:
            eyes[i] = _box_at(*hit, eye.width, eye.height)
    mouth = layout.mouth
    mouth_region = Box(fx, fy + round(fh * 0.55), fw, round(fh * 0.6))
    smile_hits = _detect(gray, mouth_region, SMILE_CASCADE, max(8, round(0.15 * side)))
    hit = _nearest(smile_hits, mouth.center, MOUTH_TOLERANCE * side)
    if hit is not None:
        # Only the height moves: the mouth is centred under the nose in a frontal face,
        # and the smile cascade's horizontal extent varies with the expression.
        mouth = _box_at(mouth.center[0], hit[1], mouth.width, mouth.height)
    line = _lip_line(rgb, mouth, layout.face)
    if line is not None and abs(line - layout.lip_line) <= MOUTH_TOLERANCE * side:
        mouth = _box_at(mouth.center[0], line, mouth.width, mouth.height)
    return FaceLayout(face=layout.face, mouth=mouth, eyes=(eyes[0], eyes[1]), detected=True)


def _lip_line(rgb: npt.NDArray[np.uint8], mouth: Box, face: Box) -> float | None:
    """Where the lips part, from the rows through the middle of the mouth; None if unclear."""
    x, y, w, h = mouth
    top, bottom = max(y - h // 2, 0), min(y + h + h // 2, rgb.shape[0])
    left, right = max(x + w // 4, 0), min(x + 3 * w // 4, rgb.shape[1])
    if bottom - top < 5 or right - left < 2:
        return None
    hsv = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2HSV).astype(np.float32)
    saturation, value = hsv[..., 1].mean(axis=1), hsv[..., 2].mean(axis=1)
    # Skin saturation from the cheeks: the face box's lower half beside the mouth.
    fx, fy, fw, fh = face
    cheeks = rgb[fy + fh // 2 : y, fx + fw // 6 : fx + 5 * fw // 6]
    if cheeks.size == 0:
        return None
    skin = float(np.median(cv2.cvtColor(cheeks, cv2.COLOR_RGB2HSV)[..., 1]))
    teeth = (saturation < TEETH_SATURATION * skin) & (value > np.median(value))
    run = _longest_run(teeth)
    if run is not None and run[1] - run[0] >= max(MIN_TEETH_ROWS * h, 2):
        return top + run[0] + BITE_LINE * (run[1] - run[0])
    reach = max(2, round(h / 4))
    rows = range(reach, len(value) - reach)
    depths = [min(value[r - reach : r].max(), value[r + 1 : r + reach + 1].max()) - value[r]
              for r in rows]  # fmt: skip
    if not depths or max(depths) < MIN_SEAM_DEPTH:
        return None
    return top + rows[int(np.argmax(depths))] + 0.5


def _longest_run(mask: npt.NDArray[np.bool_]) -> tuple[int, int] | None:
    """The longest stretch of True in `mask`, as (start, end); None if there is none."""
    best: tuple[int, int] | None = None
    start = None
    for i, flag in enumerate([*mask.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best
