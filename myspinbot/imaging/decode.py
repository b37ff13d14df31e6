"""Uploaded image bytes -> an upright RGB picture, or a reason a person can act on.

Shared by training (the photos of a profile), generation (an uploaded portrait) and
anything else that decodes what people upload: one place decides which formats are
accepted and how a hostile file is refused.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

# Past this many pixels an image is refused before decoding: decoding is where a
# "decompression bomb" (a small file declaring a huge canvas) exhausts memory. 50 MP is
# beyond any phone photo and matches the gateway's limit.
MAX_IMAGE_PIXELS = 50_000_000

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


class Unusable(Exception):
    """One photo cannot be used; str() is the reason shown next to its name."""


def _looks_supported(data: bytes) -> bool:
    """Whether the file starts like a JPEG, PNG or WebP (whatever follows)."""
    return data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


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


__all__ = ["MAX_IMAGE_PIXELS", "Unusable", "decode_image"]
