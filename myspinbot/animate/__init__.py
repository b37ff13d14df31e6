"""Talking-head animation: a portrait and its narration in, video frames out."""

from myspinbot.animate.base import Animator, get_animator
from myspinbot.animate.face import FaceLayout, locate_face
from myspinbot.animate.lipsync import LandmarkAnimator
from myspinbot.animate.weightfree import WeightFreeAnimator, frame_count

__all__ = [
    "Animator",
    "FaceLayout",
    "LandmarkAnimator",
    "WeightFreeAnimator",
    "frame_count",
    "get_animator",
    "locate_face",
]
