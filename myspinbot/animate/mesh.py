"""The lower face as a warpable mesh: lips, mouth interior and jaw driven by a pose.

Built once per portrait from its face-mesh landmarks (landmarks.py): the inner and outer
lip contours and the jaw line become, for every pixel column of the lower face, a chain
of knots from above the upper lip down to the neck. A pose (visemes.py) moves the knots:
the lower lip and the jaw drop to open the mouth, the upper lip lifts a little, the lips
meet to close it (on a smiling photo they slide over the teeth until they touch), the
corners move out for a spread mouth and in for a rounded one. Between knots the picture
stretches piecewise-linearly, so every column is a monotonic 1-D warp: no fold, no tear,
and pixels outside the region are never touched. Where the lips part, the gap is filled
with a mouth interior drawn along the moved inner contour: a dark cavity, the upper
teeth's edge just below the upper lip (their colour taken from the photo's own teeth
where it shows them), and a hint of tongue low in a wide gap.

A pose with `rest` = 1 renders the portrait exactly; the idle mouth of silence is the
lips together (visemes.py), which on a closed-mouth photo is the photo itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from myspinbot.animate.landmarks import FaceLandmarks
from myspinbot.animate.visemes import Viseme

Image = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]

# The widest speaking gap between the lips ("ah"), as a share of the mouth's width.
MAX_GAP = 0.5
# How a change of the gap is shared between the lips: opening drops the jaw and the lower
# lip (the upper lip lifts a little); closing moves both lips towards each other.
UPPER_SHARE_OPEN = 0.2
UPPER_SHARE_CLOSE = 0.15
# The chin follows the lower lip's drop (the jaw rotates: the chin moves at least as far).
CHIN_FOLLOW = 1.05
# When lips close on a smile that shows teeth, the jaw closes with the lower lip (the
# teeth come together behind the lips).
CHIN_FOLLOW_CLOSE = 1.0
# Above the lips the lift fades out over this share of the face height (towards the
# nose); below the chin the drop fades out over NECK_FADE (the chin slides on the neck).
CHEEK_FADE = 0.18
NECK_FADE = 0.35
# Corners move by up to this share of the mouth width, out for a spread mouth and in for
# a rounded one; the shift fades over LATERAL_FADE mouth widths beyond the corners.
CORNER_SHIFT = 0.11
LATERAL_FADE = 0.45
VERTICAL_FADE = 0.35
# Rounded lips push forward and look fuller: the gap's outline is rounder.
LENS_POWER = 0.75
LENS_POWER_ROUND = 0.45
# F/V: the lower lip rolls up under the upper teeth by this share of its thickness.
TUCK_LIFT = 0.35
# Mouth interior: cavity darkness relative to the darkest lip tones; the upper teeth
# show up to TEETH_DEPTH of the mouth width below the upper lip, and never more than
# TEETH_SHARE of the gap; tongue in the lower TONGUE_SHARE of a wide gap.
CAVITY_DARKEN = 0.32
LIP_SHADOW = 0.75
SHADE_GAP = 0.07
TEETH_DEPTH = 0.11
TEETH_SHARE = 0.45
TONGUE_SHARE = 0.35
DEFAULT_TEETH = np.array([222.0, 214.0, 200.0])
# The mouth's opening shows shadow this much darker than the lips' median, or teeth.
OPENING_DARK = 0.75
# Gaussian sigma (pixels) of the lips' motion across columns.
MOVE_SMOOTHING = 2.0
# Pressed lips (p, b, m) roll in by up to this share of the mouth width: the lip edges
# next to the opening are hidden, so no teeth or shadow peeks through the closed seam.
PRESS = 0.03
# Teeth in the photo: pixels of the natural mouth opening much greyer than the lips and
# brighter than the median skin tone.
TEETH_SATURATION = 0.55


@dataclass(frozen=True)
class _Columns:
    """Per pixel column of the region: the portrait's lip contours and jaw line."""

    x: Floats  # column centres, image coordinates
    upper_outer: Floats
    upper_inner: Floats
    lower_inner: Floats
    lower_outer: Floats
    chin: Floats
    top: Floats  # where the upper lip's motion has faded out
    neck: Floats  # where the chin's motion has faded out
    lens_span: float  # half-width of the mouth opening (inner corners)
    jaw: Floats  # 0..1, how much of the jaw's drop this column carries


def _polyline_at(points: npt.NDArray[np.float32], xs: Floats) -> Floats:
    """y of a left-to-right contour at each x (held flat beyond its ends)."""
    order = np.argsort(points[:, 0])
    px, py = points[order, 0].astype(np.float64), points[order, 1].astype(np.float64)
    return np.interp(xs, px, py)


def _image_openings(
    portrait: Image,
    xs: Floats,
    upper_outer: Floats,
    lower_outer: Floats,
    upper_inner: Floats,
    lower_inner: Floats,
) -> tuple[Floats, Floats]:
    """The mouth opening per column, from the mesh refined by the pixels.

    The mesh's inner lip contour is a couple of pixels off on a small mouth, and a
    smile's dark corners reach past its inner corners; pixels of the opening left on
    the lips' side would stay visible when the lips close. So per column, the run of
    non-lip pixels (shadow darker than the lips, or teeth: greyer and brighter) between
    the outer contours that touches the mesh's opening widens it."""
    upper, lower = upper_inner.copy(), lower_inner.copy()
    height = portrait.shape[0]
    hsv = cv2.cvtColor(portrait, cv2.COLOR_RGB2HSV).astype(np.float64)
    luma = cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY).astype(np.float64)
    cols = np.flatnonzero((lower_outer - upper_outer > 2) & (xs >= 0))
    if cols.size == 0:
        return upper, lower
    spans = [
        (i, max(math.ceil(upper_outer[i]), 0), min(math.floor(lower_outer[i]) + 1, height))
        for i in cols
    ]
    lip_pixels = [(a, b, int(xs[i])) for i, a, b in spans if b > a]
    lip_luma = float(np.median(np.concatenate([luma[a:b, x] for a, b, x in lip_pixels])))
    lip_sat = float(np.median(np.concatenate([hsv[a:b, x, 1] for a, b, x in lip_pixels])))
    for i, a, b in spans:
        if b - a < 2:
            continue
        x = int(xs[i])
        dark = luma[a:b, x] < OPENING_DARK * lip_luma
        teeth = (hsv[a:b, x, 1] < TEETH_SATURATION * lip_sat) & (luma[a:b, x] > lip_luma)
        runs = _runs(dark | teeth)
        ui, li = upper[i] - a, lower[i] - a
        for start, end in runs:  # rows [start, end) of the column's lip band
            if start <= li + 1.5 and end >= ui - 1.5:  # touches the mesh's opening
                upper[i] = min(upper[i], a + start)
                lower[i] = max(lower[i], a + end)
    return upper, lower


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Runs of True in `mask`, as [start, end) pairs."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _interp_columns(rows: Floats, target: Floats, source: Floats) -> npt.NDArray[np.float32]:
    """np.interp(rows, target[i], source[i]) for every column i (knots non-decreasing
    along axis 1). A plain loop: np.interp per column beats broadcasting the few knots
    over the whole region here."""
    out = np.empty((len(rows), target.shape[0]), dtype=np.float32)
    for i in range(target.shape[0]):
        out[:, i] = np.interp(rows, target[i], source[i])
    return out


def _smooth_columns(values: Floats) -> Floats:
    smoothed = cv2.GaussianBlur(values.reshape(-1, 1), (1, 0), sigmaX=0, sigmaY=MOVE_SMOOTHING)
    return np.asarray(smoothed, dtype=np.float64).ravel()


def _smoothstep(t: Floats) -> Floats:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class MouthRig:
    """Renders the lower face of one portrait in any mouth pose."""

    def __init__(self, portrait: Image, landmarks: FaceLandmarks) -> None:
        self.portrait = portrait
        height, width = portrait.shape[:2]
        pts = landmarks.points.astype(np.float64)
        self.mouth_width = max(landmarks.mouth_width, 4.0)
        face_h = max(landmarks.face_height, 8.0)
        left_corner, right_corner = pts[61], pts[291]
        self.cx = float((left_corner[0] + right_corner[0]) / 2)
        jaw = landmarks.jaw
        chin_y = float(pts[152, 1])
        lip_y = float((left_corner[1] + right_corner[1]) / 2)
        # The lower jaw line: face-outline points below the mouth corners' level.
        lower_jaw = jaw[jaw[:, 1] > lip_y - 0.05 * face_h]
        jaw_left, jaw_right = float(lower_jaw[:, 0].min()), float(lower_jaw[:, 0].max())

        x0 = max(math.floor(jaw_left - 0.05 * face_h), 0)
        x1 = min(math.ceil(jaw_right + 0.05 * face_h), width)
        nose_base = float(pts[2, 1])
        top = max(math.floor(min(nose_base, lip_y - CHEEK_FADE * face_h)), 0)
        bottom = min(math.ceil(chin_y + NECK_FADE * face_h) + 2, height)
        self.box = (x0, top, max(x1 - x0, 0), max(bottom - top, 0))
        xs = np.arange(x0, x1, dtype=np.float64) + 0.0
        upper_outer = _polyline_at(landmarks.lips_outer_upper, xs)
        lower_outer = _polyline_at(landmarks.lips_outer_lower, xs)
        upper_inner = _polyline_at(landmarks.lips_inner_upper, xs)
        lower_inner = np.maximum(_polyline_at(landmarks.lips_inner_lower, xs), upper_inner)
        # Beyond the inner corners the lips meet: the inner contours become the line
        # between the outer ones, so nothing opens there.
        inner_left, inner_right = float(pts[78, 0]), float(pts[308, 0])
        outside = (xs < inner_left) | (xs > inner_right)
        seam = (upper_outer + lower_outer) / 2
        upper_inner = np.where(outside, np.minimum(seam, lower_outer), upper_inner)
        lower_inner = np.where(outside, upper_inner, lower_inner)
        upper_inner, lower_inner = _image_openings(
            portrait, xs, upper_outer, lower_outer, upper_inner, lower_inner
        )
        # The pixel refinement is per column; smooth it across columns so the moved lip
        # edges do not show a comb of one-pixel steps.
        upper_inner = _smooth_columns(upper_inner)
        lower_inner = np.maximum(_smooth_columns(lower_inner), upper_inner)
        chin = np.maximum(_polyline_at(lower_jaw, xs), lower_outer + 2.0)
        jaw_half = max((jaw_right - jaw_left) / 2, 1.0)
        jaw_cx = (jaw_left + jaw_right) / 2
        lateral = 1.0 - _smoothstep((np.abs(xs - jaw_cx) / jaw_half - 0.55) / 0.45)
        self.cols = _Columns(
            x=xs,
            upper_outer=upper_outer,
            upper_inner=upper_inner,
            lower_inner=lower_inner,
            lower_outer=lower_outer,
            chin=chin,
            top=np.minimum(np.full_like(xs, float(top) + 1.0), upper_outer - 2.0),
            neck=np.maximum(chin + NECK_FADE * face_h, chin + 2.0),
            lens_span=max((inner_right - inner_left) / 2, 1.0),
            jaw=lateral,
        )
        self._gx, self._gy = np.meshgrid(
            np.arange(x0, x1, dtype=np.float32), np.arange(top, bottom, dtype=np.float32)
        )
        self._rows = np.arange(top, bottom, dtype=np.float64)
        self._corner_field = self._corners_field(upper_outer, lower_outer)
        region = portrait[top:bottom, x0:x1]
        self.cavity, self.tongue = self._cavity_colours(landmarks)
        self.teeth = self._teeth_colour(region)
        self.natural_gap = float(np.max(lower_inner - upper_inner, initial=0.0))

    def _corners_field(self, upper_outer: Floats, lower_outer: Floats) -> npt.NDArray[np.float32]:
        """How far each pixel moves per unit of corner shift: fully at the corners, none
        at the centre line, fading out beyond the corners and above/below the lips."""
        half = self.mouth_width / 2
        gx, gy = self._gx.astype(np.float64), self._gy.astype(np.float64)
        rel = (gx - self.cx) / half
        along = np.clip(np.abs(rel), 0.0, 1.0) * np.sign(rel)
        beyond = 1.0 - _smoothstep((np.abs(rel) - 1.0) / (2 * LATERAL_FADE))
        band_top, band_bottom = float(upper_outer.min()), float(lower_outer.max())
        fade_h = VERTICAL_FADE * self.mouth_width
        vertical = 1.0 - _smoothstep(np.maximum(band_top - gy, gy - band_bottom) / fade_h)
        return np.asarray(along * beyond * vertical, dtype=np.float32)

    def _cavity_colours(self, landmarks: FaceLandmarks) -> tuple[Floats, Floats]:
        outline = np.concatenate([landmarks.lips_outer_upper, landmarks.lips_outer_lower[::-1]])
        mask = np.zeros(self.portrait.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], (255,))
        lips = self.portrait[mask > 0].astype(np.float64)
        if len(lips) < 4:
            lips = self.portrait.reshape(-1, 3).astype(np.float64)
        luma = lips @ np.array([0.299, 0.587, 0.114])
        dark = lips[luma <= np.percentile(luma, 10)].mean(axis=0)
        self.lip_shadow = dark * LIP_SHADOW
        return dark * CAVITY_DARKEN, np.median(lips, axis=0) * 0.55

    def _teeth_colour(self, region: Image) -> Floats:
        """The photo's own teeth colour where its mouth shows them, else a default
        scaled to the face's exposure."""
        c = self.cols
        x0, top = self.box[0], self.box[1]
        rows = self._rows[:, None]
        inside = (rows > c.upper_inner[None, :] + 0.5) & (rows < c.lower_inner[None, :] - 0.5)
        hsv = cv2.cvtColor(region, cv2.COLOR_RGB2HSV).astype(np.float64)
        skin_sat = float(np.median(hsv[..., 1])) or 1.0
        skin_val = float(np.median(hsv[..., 2]))
        teeth = inside & (hsv[..., 1] < TEETH_SATURATION * skin_sat) & (hsv[..., 2] > skin_val)
        if teeth.sum() >= 6:
            return np.asarray(np.median(region[teeth].astype(np.float64), axis=0))
        del x0, top
        return np.clip(DEFAULT_TEETH * min(max(skin_val / 180.0, 0.6), 1.1), 0, 255)

    def render(self, frame: Image, pose: Viseme) -> None:
        """Draw the lower face in `pose` into `frame` (the portrait's size), in place."""
        x0, top, w, h = self.box
        if w == 0 or h == 0:
            return
        if pose.rest >= 0.999 and abs(pose.width) < 1e-3:
            return  # the portrait's own mouth: nothing moves
        c = self.cols
        speak = 1.0 - pose.rest
        natural = c.lower_inner - c.upper_inner
        offset = (c.x - self.cx) / c.lens_span
        power = LENS_POWER + (LENS_POWER_ROUND - LENS_POWER) * max(-pose.width, 0.0)
        lens = np.clip(1.0 - offset**2, 0.0, 1.0) ** power
        spoken = pose.open * MAX_GAP * self.mouth_width * lens
        gap = pose.rest * natural + speak * spoken
        delta = gap - natural
        up_share = np.where(delta > 0, UPPER_SHARE_OPEN, UPPER_SHARE_CLOSE)
        upper_move = -up_share * delta  # negative: up
        lower_move = (1.0 - up_share) * delta
        thickness = c.lower_outer - c.lower_inner
        tuck = speak * pose.tuck * TUCK_LIFT * thickness * lens
        centre = int(np.argmax(lens))
        lower_centre = float(lower_move[centre])
        follow = CHIN_FOLLOW if lower_centre > 0 else CHIN_FOLLOW_CLOSE
        chin_move = follow * lower_centre * c.jaw

        # Knots per column: target y (output) and source y (portrait), top to bottom. Where
        # lips that were apart in the photo close, they press: the knots sample from a
        # little outside the opening, so no teeth edge peeks through. Lips already closed
        # in the photo keep their own seam.
        pressed = np.clip(1.0 - gap / max(PRESS * self.mouth_width, 0.5), 0.0, 1.0)
        apart = _smoothstep(natural / max(PRESS * self.mouth_width * 2, 1.0))
        press = speak * pressed * PRESS * self.mouth_width * apart
        source = np.stack(
            [
                c.top,
                c.upper_outer,
                np.maximum(c.upper_inner - press, (c.upper_outer + c.upper_inner) / 2),
                np.minimum(c.lower_inner + press, (c.lower_outer + c.lower_inner) / 2),
                c.lower_outer,
                c.chin,
                c.neck,
            ],
            axis=1,
        )
        move = np.stack(
            [
                np.zeros_like(c.x),
                upper_move * 0.85,
                upper_move,
                lower_move,
                lower_move - tuck,
                chin_move,
                np.zeros_like(c.x),
            ],
            axis=1,
        )
        knots = np.stack(
            [c.top, c.upper_outer, c.upper_inner, c.lower_inner, c.lower_outer, c.chin, c.neck],
            axis=1,
        )
        # Smooth the lips' motion across columns: the corners, where the opening ends,
        # would otherwise show a step.
        move = cv2.GaussianBlur(move, (1, 0), sigmaX=0, sigmaY=MOVE_SMOOTHING)
        target = np.maximum.accumulate(knots + move, axis=1)
        # Identity beyond the first and last knot (np.interp would hold the end value).
        rows = self._rows
        ends = np.array([rows[0] - 1.0, rows[-1] + 1.0])
        source = np.concatenate([np.full((w, 1), ends[0]), source, np.full((w, 1), ends[1])], 1)
        target = np.concatenate([np.full((w, 1), ends[0]), target, np.full((w, 1), ends[1])], 1)
        map_y = _interp_columns(rows, target, source)

        # Corners: out for a spread mouth, in for a rounded one (backward map: sample
        # from where the moved pixel came from).
        shift = pose.width * speak * CORNER_SHIFT * self.mouth_width
        if abs(shift) > 0.05:
            map_x = (self._gx - np.float32(shift) * self._corner_field).astype(np.float32)
        else:
            map_x = self._gx
        region = np.asarray(
            cv2.remap(self.portrait, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
            dtype=np.uint8,
        )
        upper_now, lower_now = target[:, 3], target[:, 4]
        self._paint_interior(region, upper_now, lower_now, speak)
        frame[top : top + h, x0 : x0 + w] = region

    def _paint_interior(self, region: Image, upper: Floats, lower: Floats, speak: float) -> None:
        """Fill the parted lips: cavity, upper-teeth edge, tongue; anti-aliased edges."""
        gap = lower - upper
        cols = np.flatnonzero(gap > 0.3)
        if cols.size == 0 or speak <= 0.0:
            return
        a, b = int(cols.min()), int(cols.max()) + 1
        top_row = max(math.floor(upper[a:b].min()) - self.box[1] - 1, 0)
        bottom_row = min(math.ceil(lower[a:b].max()) - self.box[1] + 2, region.shape[0])
        if bottom_row <= top_row:
            return
        rows = self._rows[top_row:bottom_row, None]
        up, lo, g = upper[None, a:b], lower[None, a:b], gap[None, a:b]
        # Coverage of each pixel by the gap: 1 inside, ramping over a pixel at the lips.
        coverage = np.clip(np.minimum(rows + 0.5 - up, lo - (rows - 0.5)), 0.0, 1.0)
        coverage *= np.clip(g, 0.0, 1.0)
        depth = (rows - up) / np.maximum(g, 1e-6)  # 0 at the upper lip, 1 at the lower
        # A barely parted mouth shows shade between the lips, not a black line: the
        # cavity darkens in as the gap grows.
        depth_shade = _smoothstep(g / (SHADE_GAP * self.mouth_width))[..., None]
        colour = self.lip_shadow + (self.cavity - self.lip_shadow) * depth_shade
        colour = np.broadcast_to(colour, (*coverage.shape, 3)).copy()
        tongue = _smoothstep((depth - (1.0 - TONGUE_SHARE)) / TONGUE_SHARE) * _smoothstep(
            (g - 0.15 * self.mouth_width) / (0.15 * self.mouth_width)
        )
        colour += (self.tongue - self.cavity) * (0.6 * tongue)[..., None]
        # Upper teeth: a band under the upper lip, faded towards the corners.
        teeth_h = np.minimum(TEETH_DEPTH * self.mouth_width, TEETH_SHARE * g)
        below = rows - up
        edge = np.clip((teeth_h - below) / np.maximum(teeth_h * 0.35, 0.7), 0.0, 1.0)
        across = np.clip(
            1.0 - ((self.cols.x[None, a:b] - self.cx) / self.cols.lens_span) ** 2, 0, 1
        )
        shade = 0.55 + 0.45 * across
        teeth = edge * np.clip(across * 1.6, 0.0, 1.0) * np.clip(g / 3.0, 0.0, 1.0)
        colour += (self.teeth * shade[..., None] - colour) * teeth[..., None]
        alpha = (coverage * speak)[..., None]
        patch = region[top_row:bottom_row, a:b].astype(np.float64)
        region[top_row:bottom_row, a:b] = np.clip(
            patch * (1.0 - alpha) + colour * alpha, 0, 255
        ).astype(np.uint8)
