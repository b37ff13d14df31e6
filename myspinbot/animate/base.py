"""What an animator is, and which one a deployment uses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from myspinbot.errors import PermanentError
from myspinbot.settings import Settings

# Neural animators the platform is designed to serve through Triton. None ships in this
# build; naming one must fail clearly rather than fall back, because the person chose
# it for a reason (lip shapes per sound) that the weight-free animator cannot meet.
NEURAL_ANIMATORS = ("wav2lip", "sadtalker", "liveportrait")


class Animator(Protocol):
    """Turns a still portrait and its narration into video frames."""

    name: str

    def frame_count(self, duration_s: float, fps: int) -> int:
        """Frames for `duration_s` of audio: round(duration_s * fps), at least 1."""
        ...

    def animate(
        self,
        portrait: Image.Image,
        audio: npt.NDArray[np.float32],
        sample_rate: int,
        fps: int,
        words: Sequence[Any] | None = None,
        phonemes: Sequence[Any] | None = None,
    ) -> Iterator[npt.NDArray[np.uint8]]:
        """Exactly frame_count(len(audio) / sample_rate, fps) frames, H x W x 3 uint8 RGB
        at the portrait's size. `audio` is mono float32 in [-1, 1]; `words` and
        `phonemes`, if given, are timings (objects with .word or .phone, .start_s,
        .end_s; myspinbot.speech.models) an animator may use."""
        ...


def get_animator(settings: Settings) -> Animator:
    """The animator `settings.animator` names; PermanentError if it is not available."""
    name = settings.animator.strip().lower()
    if name == "landmark":
        from myspinbot.animate.landmarks import model_dir
        from myspinbot.animate.lipsync import LandmarkAnimator

        model_dir()  # missing model files: say so now, not at the first frame
        return LandmarkAnimator()
    if name == "weightfree":
        from myspinbot.animate.weightfree import WeightFreeAnimator

        return WeightFreeAnimator()
    if name in NEURAL_ANIMATORS:
        raise PermanentError(
            f"The {name} animator needs a model served by Triton, which is not available "
            "in this build; use a built-in animator (MYSPINBOT_ANIMATOR=landmark or "
            "weightfree)."
        )
    raise PermanentError(
        f"Unknown animator {settings.animator!r}; this build has `landmark` and "
        "`weightfree` (MYSPINBOT_ANIMATOR=landmark)."
    )
