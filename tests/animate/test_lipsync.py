"""The landmark animator, judged on its output video by an independent measure.

A narration full of p, b and m (flite, force-aligned) animates two real portraits: one
with the mouth closed, one smiling with teeth showing. Each video is encoded to MP4 and
decoded again, and MediaPipe's face mesh measures every decoded frame: how far apart the
lips are, where the eyes and nose are. Nothing here reads the animator's own state.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from myspinbot.animate import LandmarkAnimator, WeightFreeAnimator, get_animator
from myspinbot.animate.envelope import frame_rms
from myspinbot.animate.landmarks import (
    EYE_IMAGE_LEFT,
    EYE_IMAGE_RIGHT,
    FACE_OVAL,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    NOSE_TIP,
)
from myspinbot.media.video import probe
from myspinbot.settings import Settings
from tests.animate.lipsync_support import (
    FPS,
    OPEN_VOWELS,
    SIZE,
    Measured,
    Narration,
    bilabial_groups,
    bilabial_narration,
    closed_mouth_photo,
    decode,
    encode,
    frames_during,
    measure,
    needs_flite,
    prepared,
    smiling_photo,
    wav_bytes,
)

pytestmark = needs_flite
PHOTOS = {"closed-mouth": closed_mouth_photo, "smiling-with-teeth": smiling_photo}
# Lips count as closed below this share of the mouth's open value (the measure).
CLOSED_SHARE = 0.2


@dataclass(frozen=True)
class Rendered:
    portrait: npt.NDArray[np.uint8]
    frames: npt.NDArray[np.uint8]  # decoded from the MP4
    measured: Measured
    narration: Narration

    @property
    def open_value(self) -> float:
        """The lips' gap in the middle of the open vowels (aa, ae, ah...)."""
        gaps = self.measured.gaps
        mids = [
            min(int((p.start_s + p.end_s) / 2 * FPS), len(gaps) - 1)
            for p in self.narration.alignment.phonemes
            if p.phone in OPEN_VOWELS
        ]
        return float(np.median(gaps[mids]))

    def closed_frames(self) -> npt.NDArray[np.bool_]:
        return self.measured.gaps < CLOSED_SHARE * self.open_value

    def speaking(self) -> slice:
        """Frames from the first sound to the last."""
        spoken = [p for p in self.narration.alignment.phonemes if p.phone != "SIL"]
        return slice(int(spoken[0].start_s * FPS), int(np.ceil(spoken[-1].end_s * FPS)))


@pytest.fixture(scope="module")
def narration() -> Narration:
    return bilabial_narration()


def _render(animator: Any, portrait: Image.Image, narration: Narration) -> Rendered:
    frames = animator.animate(
        portrait, narration.samples, narration.rate, FPS, None, narration.alignment.phonemes
    )
    with tempfile.TemporaryDirectory() as tmp:
        wav, video = Path(tmp) / "narration.wav", Path(tmp) / "video.mp4"
        wav.write_bytes(wav_bytes(narration.samples, narration.rate))
        encode(frames, video, wav, SIZE)
        info = probe(video)
        decoded = decode(video)
    # The existing guarantees: H.264 + AAC, as long as the narration to within a frame.
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert abs(info.duration_s - narration.duration_s) <= 1 / FPS
    assert len(decoded) == info.frames
    still = np.asarray(portrait)
    return Rendered(still, decoded, measure(still, decoded), narration)


class _Still:
    """The portrait itself, every frame: the baseline a video without animation gives."""

    def animate(self, portrait: Image.Image, audio: Any, rate: int, fps: int, *_: Any) -> Any:
        frames = round(len(audio) / rate * fps)
        return (np.asarray(portrait.convert("RGB")) for _ in range(frames))


@pytest.fixture(scope="module", params=list(PHOTOS))
def photo(request: pytest.FixtureRequest) -> Image.Image:
    return prepared(PHOTOS[request.param]())


@pytest.fixture(scope="module")
def rendered(photo: Image.Image, narration: Narration) -> Rendered:
    animator = LandmarkAnimator()
    video = _render(animator, photo, narration)
    assert animator.last_mode == "phonemes"
    return video


@pytest.fixture(scope="module")
def weightfree(photo: Image.Image, narration: Narration) -> Rendered:
    """Today's loudness-only animator on the same narration: the same blinks and head
    drift, so what it changes outside the mouth is the allowance."""
    return _render(WeightFreeAnimator(), photo, narration)


@pytest.fixture(scope="module")
def still(photo: Image.Image, narration: Narration) -> Rendered:
    """The same narration over the unanimated portrait, through the same encoder."""
    return _render(_Still(), photo, narration)


def test_the_narration_is_full_of_lip_closures(narration: Narration) -> None:
    assert narration.alignment.phone_pass
    assert len(bilabial_groups(narration.alignment)) >= 20


def _closure_share(video: Rendered) -> float:
    """Share of the p/b/m groups during which the lips meet (gap under 20 % of open)."""
    gaps = video.measured.gaps
    threshold = CLOSED_SHARE * video.open_value
    groups = bilabial_groups(video.narration.alignment)
    # A closure starts a little before the aligner's phone (the lips shut, then release).
    closed = [min(gaps[i] for i in frames_during(a - 0.04, b, len(gaps))) < threshold
              for a, b in groups]  # fmt: skip
    return sum(closed) / len(groups)


def test_lips_close_for_p_b_and_m(rendered: Rendered) -> None:
    """In at least 60 % of the bilabial groups, the lips meet (gap under 20 % of open)."""
    share = _closure_share(rendered)
    assert share >= 0.6, f"lips met in {share:.0%} of the p/b/m groups"


def test_open_vowels_open_the_mouth_wide(rendered: Rendered) -> None:
    width = rendered.measured.reference.mouth_width
    assert rendered.open_value >= 0.12 * width, (rendered.open_value, width)
    # ...and clearly wider than at the closures.
    gaps = rendered.measured.gaps[rendered.speaking()]
    assert rendered.open_value >= 3 * np.percentile(gaps, 10)


def test_mouth_opening_follows_the_speech_energy(rendered: Rendered) -> None:
    gaps = rendered.measured.gaps
    n = rendered.narration
    rms = frame_rms(n.samples, n.rate, FPS, len(gaps))
    r = float(np.corrcoef(gaps, rms)[0, 1])
    assert r >= 0.6, f"lip gap vs speech energy, frame by frame: Pearson r = {r:.2f}"


def test_the_face_above_the_mouth_stays_the_portrait(
    rendered: Rendered, still: Rendered, weightfree: Rendered
) -> None:
    """Above the nose tip (forehead, brows, the nose's bridge; the eyes' blinks left
    out), every frame is the portrait moved by the small head drift: after undoing the
    best shift of a few pixels, it differs from the portrait about as much as the
    weight-free animator's frames do (the same blinks and drift, no mouth shapes)."""
    reference = rendered.measured.reference.points
    mask = _upper_face_mask(reference)

    portrait = rendered.portrait.astype(np.float32)
    shifted = np.stack([
        np.roll(portrait, (dy, dx), axis=(0, 1))[mask]
        for dy in range(-4, 5) for dx in range(-4, 5)
    ])  # fmt: skip

    def residuals(video: Rendered) -> npt.NDArray[np.float64]:
        return np.array([
            np.abs(shifted - frame[mask].astype(np.float32)).mean(axis=(1, 2)).min()
            for frame in video.frames
        ])  # fmt: skip

    animated, drift_only = residuals(rendered), residuals(weightfree)
    assert np.percentile(animated, 95) <= np.percentile(drift_only, 95) + 1.0
    # The head drifts by a few pixels at most (the mesh's estimate of the upper face).
    for landmarks in rendered.measured.frames:
        upper = reference[:, 1] < reference[NOSE_TIP, 1]
        assert np.abs(np.median(landmarks.points[upper] - reference[upper], axis=0)).max() < 5


def _upper_face_mask(points: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(points[list(FACE_OVAL)]).astype(np.int32)], (255,))
    mask[int(points[NOSE_TIP, 1]) :] = 0
    for eye in (EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT):
        x, y, w, h = cv2.boundingRect(np.round(points[list(eye)]).astype(np.int32))
        pad = max(w // 2, 6)  # the lids and lashes move in a blink
        mask[max(y - pad, 0) : y + h + pad, max(x - pad, 0) : x + w + pad] = 0
    # Keep off the image border, where the shift search would compare wrapped pixels.
    mask[:8], mask[-8:], mask[:, :8], mask[:, -8:] = 0, 0, 0, 0
    return mask > 0


def _eye_opening(points: npt.NDArray[np.float32]) -> float:
    """Upper to lower lid, both eyes (mesh points 159/145 and 386/374)."""
    return float(abs(points[145, 1] - points[159, 1]) + abs(points[374, 1] - points[386, 1]))


def test_background_away_from_the_head_is_unchanged(rendered: Rendered, still: Rendered) -> None:
    """The corners of the frame differ from the portrait only as much as the encoder
    makes an unanimated video of it differ: no flicker, no drift."""
    portrait = rendered.portrait.astype(np.float32)
    for corner in (np.s_[:, :64, :64], np.s_[:, :64, -64:], np.s_[:, -64:, :64]):
        animated = np.abs(rendered.frames[corner].astype(np.float32) - portrait[corner[1:]])
        baseline = np.abs(still.frames[corner].astype(np.float32) - portrait[corner[1:]])
        assert animated.mean() <= baseline.mean() + 0.5


def test_no_dark_band_on_closed_lips(rendered: Rendered) -> None:
    """Where the landmarks say the lips are closed, no dark band lies across them: the
    dark seam between the lips is no thicker than a closed mouth's own line."""
    closed = np.flatnonzero(rendered.closed_frames())
    assert closed.size >= 10
    luma_still = cv2.cvtColor(rendered.portrait, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lip_luma = float(np.median(luma_still[_lip_mask(rendered.measured.reference.points)]))
    width = rendered.measured.reference.mouth_width
    thickness = [
        _seam_thickness(rendered.frames[i], rendered.measured.frames[i].points, lip_luma)
        for i in closed
    ]
    # A closed mouth's seam is a line about a pixel thick at this size; the painted band
    # the issue describes was several pixels and grew with loudness.
    limit = max(2.0, 0.03 * width)
    assert np.percentile(thickness, 90) <= limit, (np.percentile(thickness, 90), limit)


def _seam_thickness(
    frame: npt.NDArray[np.uint8], points: npt.NDArray[np.float32], lip_luma: float
) -> float:
    """Median over the middle of the mouth of the dark run's height inside the lips."""
    mask = _lip_mask(points)
    dark = (cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) < 0.5 * lip_luma) & mask
    left, right = points[61][0], points[291][0]
    columns = range(int(left + 0.2 * (right - left)), int(right - 0.2 * (right - left)))
    return float(np.median([dark[:, x].sum() for x in columns]))


def _lip_mask(points: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    outline = np.concatenate([points[list(LIPS_OUTER_UPPER)], points[list(LIPS_OUTER_LOWER)][::-1]])
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], (255,))
    return mask > 0


def test_the_measure_sees_the_weightfree_animators_fault(weightfree: Rendered) -> None:
    """The same measure fails the loudness-only animator (the fault the landmark
    animator fixes): its lips do not meet for most p, b and m."""
    assert _closure_share(weightfree) < 0.6


def test_the_landmark_animator_is_the_default() -> None:
    animator = get_animator(Settings())
    assert isinstance(animator, LandmarkAnimator) and animator.name == "landmark"
    assert isinstance(get_animator(Settings(animator="weightfree")), WeightFreeAnimator)
