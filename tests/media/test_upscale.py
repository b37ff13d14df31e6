"""The upscalers: Real-ESRGAN (from its wheel, on the CPU) for the still portrait,
Lanczos for frames and as the named fallback.

The face is the US Navy's public-domain portrait of Grace Hopper, shipped in matplotlib's
sample data (tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from matplotlib import cbook
from PIL import Image

from myspinbot.errors import JobCancelled, PermanentError
from myspinbot.media.upscale import (
    EsrganUnavailable,
    Lanczos,
    RealEsrgan,
    get_upscaler,
    portrait_upscaler,
)
from myspinbot.media.video import upscale_lanczos
from myspinbot.settings import Settings


def detail(image: Image.Image) -> float:
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def coarse_error(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference (0-255) of the two images brought down to 64 px."""

    def small(image: Image.Image) -> npt.NDArray[np.float32]:
        return np.asarray(image.resize((64, 64), Image.Resampling.BOX), np.float32)

    return float(np.abs(small(a) - small(b)).mean())


def hopper() -> Image.Image:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


def test_lanczos_doubles_a_frame() -> None:
    upscale_frame = get_upscaler(Settings())
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:48, 16:48] = 200
    big = upscale_frame(frame, 128)
    assert big.shape == (128, 128, 3) and big.dtype == np.uint8
    assert big[64, 64].tolist() == [200, 200, 200] and big[4, 4].tolist() == [0, 0, 0]


@pytest.mark.parametrize("name", ["esrgan", "realesrgan", "lanczos"])
def test_frames_are_always_upscaled_with_lanczos(name: str) -> None:
    """A learned model per frame would take minutes per second of video on a CPU."""
    assert get_upscaler(Settings(upscaler=name)) is upscale_lanczos


def test_an_unknown_upscaler_is_refused_clearly() -> None:
    for get in (get_upscaler, portrait_upscaler):
        with pytest.raises(PermanentError, match="Unknown upscaler 'bicubic'") as err:
            get(Settings(upscaler="bicubic"))
        assert "esrgan" in str(err.value) and "MYSPINBOT_UPSCALER=lanczos" in str(err.value)


def test_the_portrait_upscaler_is_real_esrgan_by_default() -> None:
    assert portrait_upscaler(Settings()).name == "realesrgan-x4plus"
    assert portrait_upscaler(Settings(upscaler="lanczos")).name == "lanczos"


def test_real_esrgan_restores_a_face_better_than_lanczos() -> None:
    """A 128 px face brought back to 512 px: much sharper than Lanczos, and still the
    same picture (coarse structure, tone) as the real 512 px face."""
    face = hopper().crop((0, 0, 512, 512))  # the face fills the middle: real 512 px detail
    small = face.resize((128, 128), Image.Resampling.LANCZOS)
    learned = RealEsrgan().upscale(small, 512)
    classic = Lanczos().upscale(small, 512)
    assert learned.size == classic.size == (512, 512) and learned.mode == "RGB"
    print(
        f"detail / the real face's: esrgan {detail(learned) / detail(face):.2f}, "
        f"lanczos {detail(classic) / detail(face):.2f}; coarse error (64 px): "
        f"esrgan {coarse_error(learned, face):.1f}, lanczos {coarse_error(classic, face):.1f}"
    )
    assert detail(learned) > 5 * detail(classic)
    # Real-ESRGAN adds texture and evens the tone a little (about 4 of 255 here); a
    # different or shifted face would be tens of levels off.
    assert coarse_error(learned, face) < 6.0


def test_where_real_esrgan_cannot_load_it_says_why() -> None:
    """As on a machine without the wheel (or without libvulkan1 / libomp5): here an
    interpreter that sees no installed packages. The stage step then uses Lanczos."""
    blind = RealEsrgan(interpreter=(sys.executable, "-S"))
    with pytest.raises(EsrganUnavailable, match=r"Real-ESRGAN is not available here \(.*No module"):
        blind.upscale(hopper().resize((32, 32)), 64)


def test_the_job_stays_responsive_and_can_cancel_while_the_model_works() -> None:
    """The model runs in a child process: the job's thread keeps polling (cancellation,
    and the trigger's heartbeat thread keeps the GIL it needs); raising stops it."""
    polls: list[int] = []

    def poll() -> None:
        polls.append(1)

    small = hopper().resize((96, 96))
    assert RealEsrgan(poll).upscale(small, 384).size == (384, 384)
    assert polls, "never polled while Real-ESRGAN ran"

    def cancel() -> None:
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        RealEsrgan(cancel).upscale(small, 384)
