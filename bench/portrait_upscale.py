"""The one-off portrait upscale: Real-ESRGAN x4plus (CPU, ncnn) against Lanczos, same run.

A photo whose face square has fewer pixels than the video is enlarged once per photo
and video size (the stage step caches the result in S3). This times that step for a
face square of --source px (default 128) going to --size px (512), both ways, and says
how much detail each keeps (variance of the Laplacian, relative to the real face at the
output size: the public-domain Grace Hopper portrait from matplotlib's sample data,
or --photo). Real-ESRGAN's time includes its child process starting and loading the
model (about 2 s), as the stage step pays it.

    .venv/bin/python bench/portrait_upscale.py [--source 128] [--size 512] [--repeat 3]

A script, not a test: it asserts nothing. On a shared machine, read it with the load
average it prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from myspinbot.imaging.faces import crop_around, largest_face  # noqa: E402
from myspinbot.media.upscale import ImageUpscaler, Lanczos, RealEsrgan  # noqa: E402


def detail(image: Image.Image) -> float:
    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def face_square(path: str | None) -> Image.Image:
    """The photo's face-centred square, as training's master frames it."""
    if path:
        photo = Image.open(path).convert("RGB")
    else:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photo = Image.open(f).convert("RGB")
    face = largest_face(photo)
    if face is None:
        raise SystemExit(f"no face found in {path or 'grace_hopper.jpg'}")
    crop = crop_around(face, photo.width, photo.height)
    return photo.crop((crop.x, crop.y, crop.x + crop.width, crop.y + crop.height))


def time_it(
    upscaler: ImageUpscaler, small: Image.Image, size: int, repeat: int
) -> tuple[float, Image.Image]:
    walls, out = [], small
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        out = upscaler.upscale(small, size)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=int, default=128, help="face square side in, px")
    parser.add_argument("--size", type=int, default=512, help="video side out, px")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--photo", help="a portrait photo (default: Grace Hopper)")
    args = parser.parse_args()

    square = face_square(args.photo)
    truth = square.resize((args.size, args.size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    small = square.resize((args.source, args.source), Image.Resampling.LANCZOS, reducing_gap=3.0)
    reference = detail(truth)

    rows = []
    for name, upscaler in (("lanczos (baseline)", Lanczos()), ("realesrgan-x4plus", RealEsrgan())):
        wall, out = time_it(upscaler, small, args.size, args.repeat)
        rows.append((name, wall, detail(out) / reference))

    print(
        f"\nportrait upscale {args.source} -> {args.size} px, median of {args.repeat}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"| upscaler | seconds | x Lanczos time | detail kept (vs the real {args.size} px face) |"
    )
    print("| --- | ---: | ---: | ---: |")
    base = rows[0][1]
    for name, wall, kept in rows:
        print(f"| {name} | {wall:.3f} | {wall / base:.0f}x | {kept:.2f} |")


if __name__ == "__main__":
    main()
