"""The video's portrait: a face-centred square at the video size, as sharp as the photo allows.

Training keeps a *master* of every usable photo: the face-centred square the training
crop is cut from (head, hair, shoulders), at the photo's own resolution up to
MASTER_MAX_SIDE pixels - not the training crop, which is only as large as the model's
resolution (64 px for `tiny`). The stage step makes the portrait from the master:
shrunk when the photo has the pixels, enlarged by the configured upscaler when it
does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from myspinbot.imaging.faces import Box, crop_around

if TYPE_CHECKING:
    from myspinbot.media.upscale import ImageUpscaler

# A master's longest side. 1024 px covers every video size up to 1024 from the photo's
# own pixels and keeps a master at ~1.5 MB of PNG, whatever was uploaded.
MASTER_MAX_SIDE = 1024


@dataclass(frozen=True, eq=False)
class Master:
    """A face-centred square cut from an upright original photo."""

    image: Image.Image  # RGB, square, at most MASTER_MAX_SIDE
    face: Box  # the face, in the master's pixels
    source_side: int  # the square's side in the original photo's pixels


@dataclass(frozen=True, eq=False)
class Portrait:
    image: Image.Image  # RGB, size x size
    upscaler: str | None  # what enlarged it; None: the source had the pixels
    source_side: int  # pixels the source square had


def cut_master(image: Image.Image, face: Box) -> Master:
    """The master of `image` (upright RGB) around `face` (in its pixels)."""
    crop = crop_around(face, image.width, image.height)
    side = min(crop.width, MASTER_MAX_SIDE)
    scale = side / crop.width
    box = (crop.x, crop.y, crop.x + crop.width, crop.y + crop.height)
    if side == crop.width:
        square = image.crop(box)
    else:
        square = image.resize((side, side), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    in_master = Box(
        round((face.x - crop.x) * scale),
        round((face.y - crop.y) * scale),
        round(face.width * scale),
        round(face.height * scale),
    )
    return Master(image=square.convert("RGB"), face=in_master, source_side=crop.width)


def centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square of `image`."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def stage_portrait(square: Image.Image, size: int, upscaler: ImageUpscaler) -> Portrait:
    """`square` (a master, or any square picture) at `size` x `size`.

    Shrinking keeps the detail (Lanczos, after cheap whole-factor reduction); enlarging
    goes through `upscaler`, which for a learned one restores detail Lanczos cannot.
    """
    rgb = centre_square(square.convert("RGB"))
    if rgb.width >= size:
        image = rgb.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return Portrait(image=image, upscaler=None, source_side=rgb.width)
    return Portrait(
        image=upscaler.upscale(rgb, size), upscaler=upscaler.name, source_side=rgb.width
    )


__all__ = ["MASTER_MAX_SIDE", "Master", "Portrait", "centre_square", "cut_master", "stage_portrait"]
