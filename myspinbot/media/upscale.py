"""Which upscaler `options.upscale` uses: frames are animated at half size, then upscaled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from myspinbot.errors import PermanentError
from myspinbot.media.video import upscale_lanczos
from myspinbot.settings import Settings

Upscaler = Callable[[npt.NDArray[np.uint8], int], npt.NDArray[np.uint8]]

# Learned upscalers the platform is designed to serve through Triton. None ships in this
# build; naming one fails clearly instead of quietly falling back to Lanczos.
NEURAL_UPSCALERS = ("esrgan", "realesrgan")


def get_upscaler(settings: Settings) -> Upscaler:
    """The upscaler `settings.upscaler` names; PermanentError if it is not available."""
    name = settings.upscaler.strip().lower()
    if name == "lanczos":
        return upscale_lanczos
    if name in NEURAL_UPSCALERS:
        raise PermanentError(
            f"The {name} upscaler needs a model served by Triton, which is not available "
            "in this build; use the built-in one (MYSPINBOT_UPSCALER=lanczos)."
        )
    raise PermanentError(
        f"Unknown upscaler {settings.upscaler!r}; this build has `lanczos` "
        "(MYSPINBOT_UPSCALER=lanczos)."
    )


__all__ = ["NEURAL_UPSCALERS", "Upscaler", "get_upscaler"]
