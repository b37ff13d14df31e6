"""Preparing a training set from uploaded photos.

The face is NASA's public-domain portrait of Eileen Collins (`skimage.data.astronaut()`),
varied the way real uploads vary; the non-faces are scikit-image's coffee cup, rocket and
cat photos.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable, Mapping

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from skimage import data as skdata

from myspinbot.imaging.faces import largest_face
from myspinbot.training.dataset import (
    Box,
    DatasetError,
    PreparedDataset,
    prepare_dataset,
)

TOKEN = "sks"
RES = 64
DEFAULT_CAPTION = f"a photo of {TOKEN} person"

ASTRONAUT = Image.fromarray(skdata.astronaut())
# Where the face is in the 512x512 original (centre of the detector's box, roughly the nose).
FACE_CENTRE = (225.0, 114.0)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


# Cached: encoding them costs more than most tests. Callers must not mutate the dicts.
@functools.cache
def variants() -> dict[str, bytes]:
    """The same person as a set of differently taken, edited and encoded photos."""
    a = ASTRONAUT
    return {
        "original.png": encode(a, "PNG"),
        "headshot.jpg": encode(a.crop((120, 30, 330, 240)), "JPEG", quality=85),
        "large.webp": encode(a.resize((1400, 1400), Image.Resampling.LANCZOS), "WEBP"),
        "small.jpg": encode(a.resize((256, 256), Image.Resampling.LANCZOS), "JPEG"),
        "mirrored.png": encode(ImageOps.mirror(a), "PNG"),
        "dim.jpg": encode(ImageEnhance.Brightness(a).enhance(0.55), "JPEG", quality=70),
        "bright.webp": encode(ImageEnhance.Brightness(a).enhance(1.3), "WEBP", quality=60),
        "tilted.jpg": encode(
            a.rotate(-8, resample=Image.Resampling.BICUBIC, fillcolor=(90, 90, 90)), "JPEG"
        ),
        # The subject in the top-left of a wider shot.
        "wide.jpg": encode(
            ImageOps.expand(a, border=(0, 0, 500, 300), fill=(200, 200, 200)), "JPEG"
        ),
    }


@functools.cache
def non_faces() -> dict[str, bytes]:
    return {
        "coffee.jpg": encode(Image.fromarray(skdata.coffee()), "JPEG"),
        "rocket.png": encode(Image.fromarray(skdata.rocket()), "PNG"),
        "cat.webp": encode(Image.fromarray(skdata.chelsea()), "WEBP"),
    }


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height: valid header chunks, almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def sideways_with_exif() -> bytes:
    """The portrait stored rotated a quarter turn, with EXIF telling viewers to undo it,
    as phones save photos taken in landscape."""
    stored = ASTRONAUT.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=90)


def prepare(
    files: Mapping[str, bytes],
    *,
    resolution: int = RES,
    captions: Mapping[str, str] | None = None,
    min_images: int = 1,
) -> PreparedDataset:
    return prepare_dataset(
        list(files.items()),
        resolution=resolution,
        trigger_token=TOKEN,
        captions=captions,
        min_images=min_images,
    )


@pytest.fixture(scope="module")
def portraits() -> PreparedDataset:
    return prepare(variants())


def test_every_variant_is_usable(portraits: PreparedDataset) -> None:
    assert portraits.unusable == {}
    assert [im.name for im in portraits.images] == list(variants())
    for im in portraits.images:
        assert im.image.mode == "RGB" and im.image.size == (RES, RES), im.name
        assert im.caption == DEFAULT_CAPTION
        assert im.faces == 1, im.name


def test_faces_are_where_the_face_is(portraits: PreparedDataset) -> None:
    by_name = {im.name: im for im in portraits.images}
    expected: dict[str, tuple[float, float]] = {
        "original.png": FACE_CENTRE,
        "headshot.jpg": (FACE_CENTRE[0] - 120, FACE_CENTRE[1] - 30),
        "large.webp": (FACE_CENTRE[0] * 1400 / 512, FACE_CENTRE[1] * 1400 / 512),
        "mirrored.png": (512 - FACE_CENTRE[0], FACE_CENTRE[1]),
        "wide.jpg": FACE_CENTRE,
    }
    for name, (x, y) in expected.items():
        box = by_name[name].face_box
        cx, cy = box.center
        assert abs(cx - x) < 0.1 * box.width and abs(cy - y) < 0.1 * box.width, name


def test_crop_frames_the_face(portraits: PreparedDataset) -> None:
    for im in portraits.images:
        face, crop = im.face_box, im.crop_box
        assert crop.width == crop.height
        assert crop.x <= face.x and face.x + face.width <= crop.x + crop.width, im.name
        assert crop.y <= face.y and face.y + face.height <= crop.y + crop.height, im.name
        # Face about 40-60% of the crop, unless the photo itself is too tight for that.
        assert 0.4 <= face.width / crop.width <= 0.6 or crop.width == 210, im.name


def test_masters_keep_the_photos_own_pixels(portraits: PreparedDataset) -> None:
    """The video's portrait is cut from the master: the crop's square at the photo's own
    resolution, not the training crop's."""
    for im in portraits.images:
        master, crop = im.master, im.crop_box
        assert master.image.size == (crop.width, crop.width) == (master.source_side,) * 2
        fx, fy = im.face_box.x - crop.x, im.face_box.y - crop.y
        assert master.face == Box(fx, fy, im.face_box.width, im.face_box.height), im.name
    original = next(im for im in portraits.images if im.name == "original.png")
    x, y, w, h = original.crop_box
    expected = np.asarray(ASTRONAUT.crop((x, y, x + w, y + h)))
    assert np.array_equal(np.asarray(original.master.image), expected)


def test_a_huge_photo_gives_a_1024_px_master_around_the_face() -> None:
    huge = encode(ASTRONAUT.resize((3000, 3000), Image.Resampling.LANCZOS), "JPEG", quality=90)
    (im,) = prepare({"huge.jpg": huge}).images
    master = im.master
    assert master.image.size == (1024, 1024) and master.source_side == im.crop_box.width > 1024
    found = largest_face(master.image)
    assert found is not None
    (cx, cy), (ex, ey) = found.center, master.face.center
    assert abs(cx - ex) < 0.1 * found.width and abs(cy - ey) < 0.1 * found.width


def test_crop_is_resized_from_the_photo_not_stretched() -> None:
    # A 512 crop of the original photo: faithful colours where the face is.
    ds = prepare({"original.png": variants()["original.png"]}, resolution=512)
    im = ds.images[0]
    assert im.image.size == (512, 512)
    crop = im.crop_box
    reference = ASTRONAUT.crop((crop.x, crop.y, crop.x + crop.width, crop.y + crop.height))
    reference = reference.resize((512, 512), Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(im.image, dtype=float) - np.asarray(reference, dtype=float))
    assert diff.mean() < 2


def test_exif_orientation_is_applied() -> None:
    data = sideways_with_exif()
    ds = prepare({"landscape.jpg": data})
    (im,) = ds.images
    cx, cy = im.face_box.center
    assert abs(cx - FACE_CENTRE[0]) < 10 and abs(cy - FACE_CENTRE[1]) < 10

    # The same pixels without the tag: the face is sideways and the detector misses it,
    # so the success above is the orientation's doing.
    stripped = encode(Image.open(io.BytesIO(data)), "JPEG", quality=90)
    ds = prepare({"landscape.jpg": stripped, "original.png": variants()["original.png"]})
    assert ds.unusable == {"landscape.jpg": "no face found"}


def test_non_faces_are_unusable_among_faces() -> None:
    files = {**non_faces(), "original.png": variants()["original.png"]}
    ds = prepare(files)
    assert [im.name for im in ds.images] == ["original.png"]
    assert ds.unusable == {name: "no face found" for name in non_faces()}


def test_no_faces_at_all_names_each_file() -> None:
    with pytest.raises(DatasetError) as info:
        prepare(non_faces())
    message = str(info.value)
    assert message.startswith("none of the 3 uploaded photos can be used")
    for name in non_faces():
        assert f"{name}: no face found" in message


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        (
            "big.png",
            lambda: png_header_only(20_000, 20_000),
            "20000x20000 is too large to decode safely (the limit is 50 megapixels)",
        ),
        (
            "cut.jpg",
            lambda: (lambda b: b[: len(b) * 2 // 3])(encode(ASTRONAUT, "JPEG")),
            "the image data is corrupt or truncated",
        ),
        (
            "scrambled.png",
            lambda: (lambda b: b[:8] + bytes(reversed(b[8:])))(encode(ASTRONAUT, "PNG")),
            "the image data is corrupt or truncated",
        ),
        ("notes.jpg", lambda: b"my best photos are on my phone\n" * 10, "not an image"),
        ("empty.jpg", lambda: b"", "not an image"),
        ("anim.gif", lambda: encode(ASTRONAUT, "GIF"), "a GIF image; use JPEG, PNG or WebP"),
    ],
)
def test_unreadable_files_get_a_reason(name: str, make: Callable[[], bytes], reason: str) -> None:
    ds = prepare({name: make(), "original.png": variants()["original.png"]})
    assert ds.unusable[name].startswith(reason)
    assert len(ds.images) == 1


def test_the_error_lists_every_unusable_file() -> None:
    files = {
        "me.jpg": encode(Image.fromarray(skdata.coffee()), "JPEG"),
        "big.png": png_header_only(20_000, 20_000),
        "x.jpg": b"\x00not an image at all",
    }
    with pytest.raises(DatasetError) as info:
        prepare(files)
    message = str(info.value)
    assert "me.jpg: no face found" in message
    assert "big.png: 20000x20000 is too large to decode safely" in message
    assert "x.jpg: not an image" in message


def test_min_images_counts_usable_photos() -> None:
    v = variants()
    files = {"original.png": v["original.png"], "small.jpg": v["small.jpg"], **non_faces()}
    with pytest.raises(DatasetError, match=r"only 2 of the 5 uploaded photos can be used"):
        prepare(files, min_images=3)
    assert len(prepare(files, min_images=2).images) == 2


def test_user_captions_override_per_file() -> None:
    v = variants()
    captions = {
        "original.png": "sks person in an orange flight suit",
        "mirrored.png": "  smiling, studio lighting  ",  # no token: the default is kept in front
        "small.jpg": "   ",  # blank: the default
    }
    files = {n: v[n] for n in ("original.png", "mirrored.png", "small.jpg")}
    by_name = {im.name: im.caption for im in prepare(files, captions=captions).images}
    assert by_name == {
        "original.png": "sks person in an orange flight suit",
        "mirrored.png": f"{DEFAULT_CAPTION}, smiling, studio lighting",
        "small.jpg": DEFAULT_CAPTION,
    }


def test_best_portrait_is_the_central_face(portraits: PreparedDataset) -> None:
    best = portraits.best_portrait()
    assert best.name == "headshot.jpg"
    scores = {im.name: im.score for im in portraits.images}
    # The subject in a corner of a wide shot is the worst portrait.
    assert min(scores, key=lambda n: scores[n]) == "wide.jpg"


def test_best_portrait_prefers_enough_pixels() -> None:
    # Same framing, but one is too small to fill a 512 output without upscaling.
    v = variants()
    ds = prepare({"small.jpg": v["small.jpg"], "large.webp": v["large.webp"]}, resolution=512)
    assert ds.best_portrait().name == "large.webp"


def test_transparent_png_becomes_rgb_on_white() -> None:
    rgba = ASTRONAUT.convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 400, 512, 512))  # bottom strip transparent
    rgba.putalpha(alpha)
    ds = prepare({"cutout.png": encode(rgba, "PNG")}, resolution=512)
    assert ds.images[0].image.mode == "RGB"


def test_repeated_names_are_kept_apart() -> None:
    coffee = non_faces()["coffee.jpg"]
    files = [("image.jpg", coffee), ("image.jpg", coffee), ("x.png", variants()["small.jpg"])]
    ds = prepare_dataset(files, resolution=RES, trigger_token=TOKEN)
    assert set(ds.unusable) == {"image.jpg", "image.jpg (2)"}


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="trigger_token"):
        prepare_dataset([], resolution=RES, trigger_token="two words")
    with pytest.raises(ValueError, match="resolution"):
        prepare_dataset([], resolution=0, trigger_token=TOKEN)
    with pytest.raises(DatasetError, match="no photos were uploaded"):
        prepare_dataset([], resolution=RES, trigger_token=TOKEN)


def test_box_centre() -> None:
    assert Box(10, 20, 30, 40).center == (25.0, 40.0)
