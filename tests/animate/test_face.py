"""Finding the face and its features; a default layout when there is none."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from myspinbot.animate import locate_face
from myspinbot.training.dataset import prepare_dataset
from tests.media_fixtures import face_photos, non_face_photo


def test_features_sit_where_a_face_has_them() -> None:
    # Crops, mirror images and exposures of the astronaut, prepared as for training.
    for prepared in prepare_dataset(face_photos(6), resolution=512, trigger_token="ohwx").images:
        layout = locate_face(prepared.image)
        assert layout.detected
        fx, fy, fw, fh = layout.face
        left, right = layout.eyes
        assert left.center[0] < fx + fw / 2 < right.center[0]
        assert abs(layout.mouth.center[0] - (fx + fw / 2)) < 0.05 * fw
        for eye in layout.eyes:
            assert fy + 0.25 * fh < eye.center[1] < fy + 0.5 * fh
        # She smiles with her teeth showing: the lips part at the bite line, well
        # below the eyes and inside the face box.
        assert fy + 0.75 * fh < layout.lip_line < fy + 0.9 * fh


def test_the_lips_part_at_the_bite_line_of_a_smile() -> None:
    prepared = prepare_dataset(face_photos(1), resolution=512, trigger_token="ohwx").images[0]
    layout = locate_face(prepared.image)
    # In this 512 px crop the upper teeth span rows ~343-348 and the lower ~349-352
    # (measured by eye on the image).
    assert 345 <= layout.lip_line <= 351


def test_no_face_gives_the_default_layout() -> None:
    coffee = Image.open(io.BytesIO(non_face_photo()[1]))
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 200, 3), np.uint8))
    for image in (coffee, noise):
        layout = locate_face(image)
        assert not layout.detected
        width, height = image.size
        fx, fy, fw, fh = layout.face
        assert (fw, fh) == (round(0.6 * width), round(0.6 * height))
        assert abs(fx + fw / 2 - width / 2) <= 1 and abs(fy + fh / 2 - height / 2) <= 1
