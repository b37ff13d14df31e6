"""The upscaler slot: Lanczos built in, learned upscalers refused until one is served."""

from __future__ import annotations

import numpy as np
import pytest

from myspinbot.errors import PermanentError
from myspinbot.media.upscale import get_upscaler
from myspinbot.settings import Settings


def test_lanczos_doubles_a_frame() -> None:
    upscale = get_upscaler(Settings())
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:48, 16:48] = 200
    big = upscale(frame, 128)
    assert big.shape == (128, 128, 3) and big.dtype == np.uint8
    assert big[64, 64].tolist() == [200, 200, 200] and big[4, 4].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("name", "says"), [("esrgan", "needs a model served by Triton"), ("bicubic", "Unknown")]
)
def test_an_upscaler_this_build_lacks_is_refused_clearly(name: str, says: str) -> None:
    with pytest.raises(PermanentError, match=says) as err:
        get_upscaler(Settings(upscaler=name))
    assert "MYSPINBOT_UPSCALER=lanczos" in str(err.value)
