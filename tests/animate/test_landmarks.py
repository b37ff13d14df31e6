"""The face mesh on real portraits, and the landmark animator's edges: no face, exact
frame counts, missing model files."""

from __future__ import annotations

import importlib.util
import io
import re

import numpy as np
import pytest
from PIL import Image

from myspinbot.animate import LandmarkAnimator, get_animator
from myspinbot.animate.landmarks import CHIN, NOSE_TIP, LandmarkModelMissing, locate_landmarks
from myspinbot.settings import Settings
from tests.animate.lipsync_support import closed_mouth_photo, prepared, smiling_photo
from tests.media_fixtures import RATE, non_face_photo


@pytest.mark.parametrize("photo", [closed_mouth_photo, smiling_photo])
def test_the_mesh_finds_the_features_where_a_face_has_them(photo) -> None:  # type: ignore[no-untyped-def]
    image = np.asarray(prepared(photo()))
    landmarks = locate_landmarks(image)
    assert landmarks is not None and landmarks.score > 0.9
    left_eye, right_eye = (e.mean(axis=0) for e in landmarks.eyes)
    nose, chin = landmarks.points[NOSE_TIP], landmarks.points[CHIN]
    mouth = landmarks.lips_outer_upper.mean(axis=0)
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < mouth[1] < chin[1]
    # At the middle of the mouth: outer upper lip, inner upper, inner lower, outer lower.
    p = landmarks.points
    assert p[0, 1] < p[13, 1] <= p[14, 1] < p[17, 1]
    assert landmarks.mouth_width > 30


def test_closed_lips_measure_closed_and_a_smile_with_teeth_open() -> None:
    closed = locate_landmarks(np.asarray(prepared(closed_mouth_photo())))
    smile = locate_landmarks(np.asarray(prepared(smiling_photo())))
    assert closed is not None and smile is not None
    assert closed.inner_gap < 0.05 * closed.mouth_width
    assert smile.inner_gap > 0.1 * smile.mouth_width


def test_no_face_no_landmarks() -> None:
    coffee = np.asarray(Image.open(io.BytesIO(non_face_photo()[1])).convert("RGB"))
    noise = np.random.default_rng(1).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    assert locate_landmarks(coffee) is None
    assert locate_landmarks(noise) is None


def test_a_portrait_without_a_face_is_animated_by_the_weightfree_animator() -> None:
    noise = np.random.default_rng(7).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    speech = (0.3 * np.sin(np.linspace(0, 2000, RATE))).astype(np.float32)
    animator = LandmarkAnimator()
    frames = list(animator.animate(Image.fromarray(noise), speech, RATE, 25))
    assert animator.last_mode == "weightfree" and len(frames) == 25


def test_frames_match_the_audio_length_and_the_portrait() -> None:
    portrait = prepared(smiling_photo()).resize((301, 257))
    animator = LandmarkAnimator()
    for seconds, expected in ((0.0, 1), (0.01, 1), (1.0, 25), (1.02, 26)):
        audio = np.zeros(round(RATE * seconds), np.float32)
        frames = list(animator.animate(portrait, audio, RATE, 25))
        assert len(frames) == expected == animator.frame_count(seconds, 25)
        assert all(f.shape == (257, 301, 3) and f.dtype == np.uint8 for f in frames)
    # Silence without phonemes: the idle mouth, and a still picture frame after frame
    # (the head only drifts while the person talks).
    assert animator.last_mode == "loudness"
    assert all(np.array_equal(f, frames[0]) for f in frames[:20])


def test_missing_model_files_are_a_readable_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the mediapipe wheel had not been installed: the package cannot be found.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mediapipe" else real(name, *a),
    )
    with pytest.raises(
        LandmarkModelMissing, match=re.escape("pip install --no-deps mediapipe==0.10.21")
    ):
        get_animator(Settings(animator="landmark"))
