"""Helpers shared by the model and LoRA-training tests (CPU, tiny preset)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from PIL import Image, ImageDraw

CAPTION = "a photo of sks person"
_COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40), (200, 40, 200)]


def shape_images(count: int = 4, resolution: int = 64) -> list[Image.Image]:
    """Distinct coloured discs and boxes on a light background: easy to tell apart."""
    images = []
    unit = resolution / 64
    for i in range(count):
        image = Image.new("RGB", (resolution, resolution), (240, 240, 240))
        draw = ImageDraw.Draw(image)
        box = [v * unit for v in (8 + 2 * i, 10, 48 + 2 * i, 54)]
        if i % 2:
            draw.rectangle(box, fill=_COLOURS[i % len(_COLOURS)])
        else:
            draw.ellipse(box, fill=_COLOURS[i % len(_COLOURS)])
        images.append(image)
    return images


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a small shared CI machine, two OpenMP threads that get
    preempted wait on each other and can run several times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
