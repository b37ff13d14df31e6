"""Pixel warps that open the mouth, close the eyes and move the head of a still portrait.

Each warp is a smooth displacement field applied with cv2.remap to a patch around one
feature; the field is zero at the patch border, so a warped patch pastes back without
a seam and pixels outside it are never touched. The mouth and eye warps depend only on
one scalar (how open, how closed), so a patch per quantised level is rendered once per
portrait and a frame is assembled by pasting patches: the per-frame cost is a few
copies, independent of the warp's complexity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from myspinbot.animate.face import FaceLayout
from myspinbot.imaging.faces import Box

Image = npt.NDArray[np.uint8]
Field = npt.NDArray[np.float32]

# Quantisation of the per-frame scalars. 32 mouth levels put neighbouring levels under a
# pixel apart even for a face filling the frame; a blink lasts 3-4 frames, so a few eye
# levels are enough.
MOUTH_LEVELS = 32
EYE_LEVELS = 8

# Resampling of every warp. Bicubic, not bilinear: the head moves by fractions of a
# pixel, and bilinear resampling at half-pixel offsets averages neighbours - measured on
# a 512 px photo portrait, it halved the face's detail (variance of the Laplacian) in
# the delivered video; bicubic keeps ~0.9 of it.
INTERPOLATION = cv2.INTER_CUBIC

# Mouth geometry, as fractions of the face box height. The lips part by up to GAP at
# the centre: about what speech does (wide vowels), well short of a yawn. The upper lip
# takes UPPER_SHARE of that, the lower lip the rest, and the jaw drops with the lower
# lip. The lower lip bends between the corners and the jaw over LIP_THICKNESS; the chin
# moves rigidly down to CHIN_RIGID below the lips, then the drop fades out over
# NECK_FADE (the chin slides over the neck). Above the lips the lift fades out over
# CHEEK_FADE, towards the nose.
GAP = 0.06
UPPER_SHARE = 0.25
LIP_THICKNESS = 0.12
CHIN_RIGID = 0.22
NECK_FADE = 0.25
CHEEK_FADE = 0.15
# The jaw moves as a whole across this half-width (fraction of the face box width),
# fading to still at JAW_HALF_WIDTH.
JAW_CORE = 0.25
JAW_HALF_WIDTH = 0.5
# Roundness of the parted lips' outline: 1 is a lens with pointed corners, 0.5 an
# ellipse; in between reads as a mouth.
LIP_ROUNDNESS = 0.7
# Share of the mouth box's width the lips part over. A smile's corners curve up above the
# line where the lips part, so a gap reaching the corners would cut into the cheeks.
LIP_SPAN = 0.8
# How dark the inside of the mouth is drawn, relative to the darkest lip pixels, and how
# opaque: the lips part onto shadow, not onto a painted hole.
INTERIOR_DARKEN = 0.45
INTERIOR_OPACITY = 0.9

# Blink geometry, relative to the eye box (centre, height). The visible eye spans
# EYE_TOP..EYE_BOTTOM; the upper lid slides down to the lower one, stretching the skin
# between the brow's lower edge (LID_SKIN_TOP) and the lid, and squashing the eye into
# the lower lid, where the lashes are drawn as a soft dark line LASH_WIDTH thick.
EYE_TOP = -0.32
EYE_BOTTOM = 0.3
LID_SKIN_TOP = -0.7
LID_SMOOTHING = 0.08  # Gaussian sigma of the per-row map, fraction of the eye box height
LASH_WIDTH = 0.08
LASH_OPACITY = 0.7
LID_CORE = 0.3  # half-width fully closed, fraction of the eye box width
LID_EDGE = 0.62  # half-width where the closure fades to nothing

# The head moves as a whole inside this ellipse (semi-axes as fractions of the face box,
# centred a little above the face box centre to take in the hair) and fades to still
# between HEAD_CORE and HEAD_EDGE times its radius: the neck and the hair's edge stretch a
# little; the background and shoulders do not move.
HEAD_SEMI_AXES = (0.8, 0.95)
HEAD_CENTRE_UP = 0.08
HEAD_CORE = 0.75
HEAD_EDGE = 1.2


def _fade(t: npt.NDArray[np.float32]) -> Field:
    """1 at t <= 0, 0 at t >= 1, a raised-cosine in between (no kink at either end)."""
    t = np.clip(t, 0.0, 1.0)
    return np.asarray(0.5 * (1.0 + np.cos(np.pi * t)), dtype=np.float32)


def _clip_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
    left, top = max(math.floor(x0), 0), max(math.floor(y0), 0)
    right, bottom = min(math.ceil(x1), width), min(math.ceil(y1), height)
    return Box(left, top, max(right - left, 0), max(bottom - top, 0))


@dataclass(frozen=True)
class PatchSet:
    """Pre-rendered versions of one region of the portrait, one per level."""

    box: Box
    patches: npt.NDArray[np.uint8]  # levels x h x w x 3

    @property
    def levels(self) -> int:
        return int(self.patches.shape[0])

    def paste(self, frame: Image, amount: float) -> None:
        """Draw the patch for `amount` (0..1) into `frame`; 0 leaves the frame as it is."""
        level = round(min(max(amount, 0.0), 1.0) * (self.levels - 1))
        if level == 0 or self.box.width == 0 or self.box.height == 0:
            return
        x, y, w, h = self.box
        frame[y : y + h, x : x + w] = self.patches[level]


def _grid(box: Box) -> tuple[Field, Field]:
    xs = np.arange(box.x, box.x + box.width, dtype=np.float32)
    ys = np.arange(box.y, box.y + box.height, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy


def mouth_patches(portrait: Image, layout: FaceLayout, levels: int = MOUTH_LEVELS) -> PatchSet:
    """The mouth region rendered at `levels` openings, from closed (the portrait) to open.

    The field is defined in output space (for each output pixel, where to sample): rows
    below the parted lips sample from higher up (the lower lip and the jaw have dropped),
    rows above them from lower down (the upper lip lifts), and rows between the lips
    sample the lip line and are shaded as the inside of the mouth. The gap is widest at
    the centre and closes at the corners, the shape of a mouth saying "ah"; beside the
    mouth the jaw still drops and the skin under the corners stretches.
    """
    height, width = portrait.shape[:2]
    fw, fh = layout.face.width, layout.face.height
    cx, ly = layout.mouth.center[0], layout.lip_line
    half_mouth = max(LIP_SPAN * layout.mouth.width / 2, 1.0)
    gap = GAP * fh
    box = _clip_box(
        cx - JAW_HALF_WIDTH * fw,
        ly - CHEEK_FADE * fh - gap,
        cx + JAW_HALF_WIDTH * fw,
        ly + (CHIN_RIGID + NECK_FADE) * fh + gap,
        width,
        height,
    )
    patches = np.empty((levels, box.height, box.width, 3), dtype=np.uint8)
    x, y, w, h = box
    patches[:] = portrait[y : y + h, x : x + w]
    if w == 0 or h == 0:
        return PatchSet(box, patches)

    gx, gy = _grid(box)
    dx = np.abs(gx - cx)
    core, edge = JAW_CORE * fw, JAW_HALF_WIDTH * fw
    jaw = _fade((dx - core) / max(edge - core, 1.0))  # lateral extent of the jaw's drop
    lens = np.clip(1.0 - (dx / half_mouth) ** 2, 0.0, 1.0) ** LIP_ROUNDNESS
    interior = _interior_colour(portrait, layout)

    for level in range(1, levels):
        opening = level / (levels - 1)
        parted = opening * gap * lens  # lip to lip, per column
        up = UPPER_SHARE * parted  # how far the upper lip has lifted
        lip = parted - up  # how far the lower lip has dropped
        chin = opening * gap * (1.0 - UPPER_SHARE) * jaw  # how far the jaw has dropped
        top, bottom = ly - up, ly + lip  # where the lips are now
        bend = 1.0 - _fade((gy - bottom) / (LIP_THICKNESS * fh))
        neck = _fade((gy - bottom - CHIN_RIGID * fh) / (NECK_FADE * fh))
        drop = (lip + (chin - lip) * bend) * neck
        lift = up * _fade((top - gy) / (CHEEK_FADE * fh))
        map_y = np.where(gy >= bottom, gy - drop, gy + lift)
        between = (gy > top) & (gy < bottom)
        map_y = np.where(between, np.float32(ly), map_y).astype(np.float32)
        warped = cv2.remap(portrait, gx, map_y, INTERPOLATION, borderMode=cv2.BORDER_REFLECT)
        # Opacity ramps up from each lip over a third of the gap (at least a pixel): the
        # lips keep an anti-aliased edge and the inside reads as depth, not a flat hole.
        inside = np.minimum(gy - top, bottom - gy)
        ramp = np.maximum(parted / 3.0, 1.0)
        alpha = INTERIOR_OPACITY * np.clip((inside + 0.5) / ramp, 0.0, 1.0) * (parted > 0.5)
        alpha3 = alpha.astype(np.float32)[..., None]
        blended = warped * (1.0 - alpha3) + interior * alpha3
        patches[level] = np.clip(blended, 0, 255).astype(np.uint8)
    return PatchSet(box, patches)


def _darkest(region: Image) -> npt.NDArray[np.float32]:
    """The mean colour of the darkest tenth of `region`'s pixels."""
    pixels = region.reshape(-1, 3).astype(np.float32)
    if pixels.size == 0:
        return np.array([40.0, 20.0, 20.0], dtype=np.float32)
    luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.asarray(pixels[luma <= np.percentile(luma, 10)].mean(axis=0), dtype=np.float32)


def _interior_colour(portrait: Image, layout: FaceLayout) -> npt.NDArray[np.float32]:
    """The shade inside the mouth: a darkened version of the lips' darkest tones."""
    x, y, w, h = layout.mouth
    region = portrait[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)]
    return (_darkest(region) * INTERIOR_DARKEN).astype(np.float32)


def eye_patches(portrait: Image, eye: Box, levels: int = EYE_LEVELS) -> PatchSet:
    """One eye rendered at `levels` closures, from open (the portrait) to shut.

    Per row, a piecewise-linear map: the skin under the brow stretches down to where
    the upper lid now is, and the eye between there and the lower lid is squashed
    towards the lower lid. The map is smoothed along the column so its corners do not
    show, and faded out sideways past the eye's corners.
    """
    height, width = portrait.shape[:2]
    ecx, ecy = eye.center
    ew, eh = max(eye.width, 1), max(eye.height, 1)
    skin, lid, bottom = ecy + LID_SKIN_TOP * eh, ecy + EYE_TOP * eh, ecy + EYE_BOTTOM * eh
    sigma = max(LID_SMOOTHING * eh, 0.5)
    # The smoothing spreads the shift by ~3 sigma; the box takes all of it in, so the
    # shift is zero on the box's border and the patch has no seam.
    margin = 3 * sigma + 1
    box = _clip_box(
        ecx - LID_EDGE * ew, skin - margin, ecx + LID_EDGE * ew, bottom + margin, width, height
    )
    patches = np.empty((levels, box.height, box.width, 3), dtype=np.uint8)
    x, y, w, h = box
    patches[:] = portrait[y : y + h, x : x + w]
    if w == 0 or h == 0:
        return PatchSet(box, patches)
    gx, gy = _grid(box)
    lateral = _fade((np.abs(gx - ecx) - LID_CORE * ew) / ((LID_EDGE - LID_CORE) * ew))
    rows = gy[:, 0].astype(np.float64)
    lash = _darkest(portrait[y : y + h, x : x + w])
    for level in range(1, levels):
        closure = level / (levels - 1)
        new_lid = lid + closure * (bottom - lid)
        source = np.interp(rows, [skin, new_lid, bottom], [skin, lid, bottom])
        source = np.where((rows < skin) | (rows > bottom), rows, source)  # no clamping
        shift = cv2.GaussianBlur((source - rows).reshape(-1, 1), (1, 0), sigma).ravel()
        map_y = (gy + lateral * shift.astype(np.float32)[:, None]).astype(np.float32)
        warped = cv2.remap(portrait, gx, map_y, INTERPOLATION, borderMode=cv2.BORDER_REFLECT)
        # The squashed eye thins to nothing; the lashes along the closed lid do not.
        line = np.exp(-0.5 * ((gy - new_lid) / max(LASH_WIDTH * eh, 0.5)) ** 2)
        alpha = (LASH_OPACITY * closure**2 * lateral * line).astype(np.float32)[..., None]
        patches[level] = np.clip(warped * (1.0 - alpha) + lash * alpha, 0, 255).astype(np.uint8)
    return PatchSet(box, patches)


class HeadMotion:
    """Moves the head by a sub-face offset, fading to nothing at the shoulders."""

    def __init__(self, shape: tuple[int, ...], layout: FaceLayout) -> None:
        height, width = shape[:2]
        fx, fy, fw, fh = layout.face
        cx, cy = fx + fw / 2, fy + fh / 2 - HEAD_CENTRE_UP * fh
        ax, ay = HEAD_SEMI_AXES[0] * fw, HEAD_SEMI_AXES[1] * fh
        self.box = _clip_box(
            cx - HEAD_EDGE * ax, cy - HEAD_EDGE * ay, cx + HEAD_EDGE * ax, cy + HEAD_EDGE * ay,
            width, height,
        )  # fmt: skip
        gx, gy = _grid(self.box)
        radius = np.hypot((gx - cx) / max(ax, 1.0), (gy - cy) / max(ay, 1.0))
        self._weight = _fade((radius - HEAD_CORE) / (HEAD_EDGE - HEAD_CORE))
        # The weight is zero on the box's border, so the warp samples only inside the
        # box: it can run on the box alone, in the box's own coordinates.
        self._gx = gx - np.float32(self.box.x)
        self._gy = gy - np.float32(self.box.y)

    def apply(self, frame: Image, dx: float, dy: float) -> None:
        """Move the head in `frame` by (dx, dy) pixels, in place."""
        if (abs(dx) < 0.02 and abs(dy) < 0.02) or self.box.width == 0 or self.box.height == 0:
            return  # under a fiftieth of a pixel: nothing visible, keep the frame exact
        x, y, w, h = self.box
        map_x = self._gx - np.float32(dx) * self._weight
        map_y = self._gy - np.float32(dy) * self._weight
        source = frame[y : y + h, x : x + w].copy()
        frame[y : y + h, x : x + w] = cv2.remap(
            source, map_x, map_y, INTERPOLATION, borderMode=cv2.BORDER_REFLECT
        )
