"""From a person's uploaded photos to a face-centred, captioned training set.

Each photo is decoded defensively, turned upright, searched for a face, and cropped to a
square around the face (with hair and shoulders) at the training resolution. Photos that
cannot be used are reported by name with a reason the person can act on.
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import cv2.data
import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from myspinbot.errors import PermanentError

# Past this many pixels an image is refused before decoding: decoding is where a
# "decompression bomb" (a small file declaring a huge canvas) exhausts memory. 50 MP is
# beyond any phone photo and matches the gateway's limit.
MAX_IMAGE_PIXELS = 50_000_000

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

# Other formats people upload, recognised by their first bytes so the reason can say
# what the file is rather than "not an image" (HEIC is the iPhone default).
OTHER_FORMATS: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF8", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
)

_PLUGINS: tuple[type[ImageFile.ImageFile], ...] = (
    JpegImagePlugin.JpegImageFile,
    PngImagePlugin.PngImageFile,
    WebPImagePlugin.WebPImageFile,
)


def _looks_supported(data: bytes) -> bool:
    """Whether the file starts like a JPEG, PNG or WebP (whatever follows)."""
    return data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


class DatasetError(PermanentError):
    """Too few of the uploaded photos can be used; the message says which and why."""


class Box(NamedTuple):
    """A rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


@dataclass(frozen=True, eq=False)
class PreparedImage:
    name: str
    image: Image.Image  # RGB, resolution x resolution
    caption: str
    face_box: Box  # in the upright original (after its EXIF orientation is applied)
    crop_box: Box  # the square that was cut out and resized, same coordinates
    face_size: int  # the face box's side in original pixels
    faces: int  # faces detected; more than one means the largest was taken
    score: float  # suitability as a portrait, 0-1: see _portrait_score


@dataclass
class PreparedDataset:
    images: list[PreparedImage] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)  # file name -> reason

    def best_portrait(self) -> PreparedImage:
        """The photo best used as a portrait: a central face with enough pixels."""
        if not self.images:
            raise DatasetError("no usable photo to take a portrait from")
        return max(self.images, key=lambda im: (im.score, im.face_size))


class Unusable(Exception):
    """One photo cannot be used; str() is the reason shown next to its name."""


def prepare_dataset(
    files: Sequence[tuple[str, bytes]],
    *,
    resolution: int,
    trigger_token: str,
    captions: Mapping[str, str] | None = None,
    min_images: int = 1,
) -> PreparedDataset:
    """Decode, find the face in, crop and caption each photo.

    Raises DatasetError when fewer than `min_images` photos are usable.
    """
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels, not {resolution}")
    if not trigger_token or any(c.isspace() for c in trigger_token):
        raise ValueError(f"trigger_token must be a single word, not {trigger_token!r}")
    dataset = PreparedDataset()
    for name, original_name, data in _unique_names(files):
        caption = caption_for(original_name, trigger_token, captions)
        try:
            image = prepare_image(name, data, resolution=resolution, caption=caption)
        except Unusable as exc:
            dataset.unusable[name] = str(exc)
        else:
            dataset.images.append(image)
    if len(dataset.images) < min_images:
        raise DatasetError(_explain(dataset, total=len(files), min_images=min_images))
    return dataset


def prepare_image(name: str, data: bytes, *, resolution: int, caption: str) -> PreparedImage:
    """One photo -> a face-centred square. Raises Unusable with the reason."""
    image = decode_image(data)
    faces = find_faces(image)
    if not faces:
        raise Unusable("no face found")
    face = max(faces, key=lambda b: b.width * b.height)
    min_face = max(MIN_FACE_PX, resolution // 10)
    if face.width < min_face:
        raise Unusable(f"the face is only {face.width} px wide; use a closer or larger photo")
    crop = crop_around(face, image.width, image.height)
    square = image.resize(
        (resolution, resolution),
        Image.Resampling.LANCZOS,
        box=(crop.x, crop.y, crop.x + crop.width, crop.y + crop.height),
        # Shrinks by whole factors first (cheap box filter), then LANCZOS for the rest:
        # much faster on 12 MP photos and indistinguishable at the output size.
        reducing_gap=3.0,
    )
    return PreparedImage(
        name=name,
        image=square,
        caption=caption,
        face_box=face,
        crop_box=crop,
        face_size=face.width,
        faces=len(faces),
        score=_portrait_score(face, crop, image.size, resolution),
    )


def caption_for(name: str, trigger_token: str, captions: Mapping[str, str] | None) -> str:
    """The user's caption for `name` if given, else `a photo of <token> person`.

    A user caption without the trigger token gets the default prefixed: without the
    token in every caption, training cannot tie the identity to it.
    """
    default = f"a photo of {trigger_token} person"
    user = (captions or {}).get(name, "").strip()
    if not user:
        return default
    if trigger_token in user.split():
        return user
    return f"{default}, {user}"


def decode_image(data: bytes) -> Image.Image:
    """Bytes of a JPEG/PNG/WebP -> an upright RGB image, or Unusable with the reason."""
    image = _open_header(data)
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise Unusable(
            f"{width}x{height} is too large to decode safely "
            f"(the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels)"
        )
    with warnings.catch_warnings():
        # Pillow only warns below its own (higher) bomb limit; here that is a refusal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Unusable(f"{width}x{height} is too large to decode safely") from None
        except Exception:
            # Decoders fail in many ways (OSError, ValueError, SyntaxError, EOFError...);
            # for the person who uploaded the file they all mean the same thing.
            raise Unusable("the image data is corrupt or truncated") from None
    return _to_rgb(_upright(image))


def _open_header(data: bytes) -> Image.Image:
    # The format classes are used directly rather than Image.open: Image.open refuses
    # huge images itself, before their size can be read for the message, and would try
    # every format Pillow knows, widening what a hostile file can reach.
    for plugin in _PLUGINS:
        try:
            return plugin(io.BytesIO(data))
        except (SyntaxError, OSError, ValueError, EOFError):
            continue
    if _looks_supported(data):
        raise Unusable("the image data is corrupt or truncated")
    for magic, offset, fmt in OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            raise Unusable(f"a {fmt} image; use JPEG, PNG or WebP")
    raise Unusable("not an image (JPEG, PNG or WebP expected)")


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # Broken EXIF is common from some editors; an unrotated photo beats a refusal.
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent areas go white, as a viewer shows them; convert("RGB") would
        # expose whatever colour the encoder left under them (often black).
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I"):
        # 16-bit greyscale PNG: convert() would clip at 255 and turn the photo white.
        wide = np.asarray(image, dtype=np.uint32)
        return Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


@functools.cache
def _cascade(filename: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, filename))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {filename} could not be loaded")
    return cascade


def find_faces(image: Image.Image) -> list[Box]:
    """Faces in an RGB image, in its pixel coordinates; the first cascade that finds any."""
    gray = np.asarray(image.convert("L"))
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    min_side = max(MIN_FACE_PX, round(MIN_FACE_FRACTION * min(gray.shape)))
    for filename, scale_factor, min_neighbors in CASCADES:
        found = _cascade(filename).detectMultiScale(
            gray,
            scaleFactor=scale_factor,
            minNeighbors=min_neighbors,
            minSize=(min_side, min_side),
        )
        if len(found):
            return [Box(*(round(int(v) / scale) for v in rect)) for rect in found]
    return []


def crop_around(face: Box, width: int, height: int) -> Box:
    """The square crop for `face`, moved (and if need be shrunk) to lie inside the image."""
    side = min(round(face.width * CROP_SCALE), width, height)
    cx, cy = face.center
    cy -= CROP_SHIFT_UP * face.height
    left = min(max(round(cx - side / 2), 0), width - side)
    top = min(max(round(cy - side / 2), 0), height - side)
    return Box(left, top, side, side)


def _portrait_score(face: Box, crop: Box, size: tuple[int, int], resolution: int) -> float:
    """How well the photo serves as a portrait: 0-1, higher is better.

    The product of coverage - whether the crop has at least the output's pixels (less
    means upscaling, hence blur) - and centrality - how near the face is to the middle of
    the photo (1 at the centre, 0 in a corner).
    """
    coverage = min(1.0, crop.width / resolution)
    width, height = size
    cx, cy = face.center
    offset = math.hypot((cx - width / 2) / width, (cy - height / 2) / height)
    centrality = max(0.0, 1.0 - offset / math.hypot(0.5, 0.5))
    return round(coverage * centrality, 4)


def _unique_names(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, str, bytes]]:
    """(unique name, name as uploaded, data): two uploads may share a name ("image.jpg"
    from two phones), yet each needs its own entry in `unusable` and in messages."""
    seen: dict[str, int] = {}
    out = []
    for name, data in files:
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name} ({seen[name]})"
        out.append((unique, name, data))
    return out


def _explain(dataset: PreparedDataset, *, total: int, min_images: int) -> str:
    reasons = "; ".join(f"{name}: {reason}" for name, reason in dataset.unusable.items())
    usable = len(dataset.images)
    if total == 0:
        return "no photos were uploaded"
    photos = "photo" if min_images == 1 else "photos"
    if usable == 0:
        head = f"none of the {total} uploaded photos can be used"
    else:
        head = f"only {usable} of the {total} uploaded photos can be used"
    return f"{head} (at least {min_images} {photos} with a clear face needed): {reasons}"
