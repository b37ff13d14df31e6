"""Test inputs a person would upload: face photos and a voice clip.

The face is NASA's public-domain portrait of astronaut Eileen Collins, shipped
inside scikit-image (`skimage.data.astronaut()`); variants are crops, flips and
exposure changes of it. A second face, for checks that must hold on more than one
person, is Grace Hopper's US Navy portrait (public domain; `hopper_photo`). The voice
is synthetic: a harmonic series at a chosen pitch with syllable-like amplitude
modulation, so its pitch is known.
"""

from __future__ import annotations

import io
import wave

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from skimage import data as skdata

RATE = 16_000


def face_photos(n: int = 6) -> list[tuple[str, bytes]]:
    base = Image.fromarray(skdata.astronaut())
    out = []
    for i in range(n):
        img = base.crop((10 * i, 5 * i, 512 - 8 * (i % 3), 512 - 6 * (i % 4)))
        if i % 2:
            img = ImageOps.mirror(img)
        img = ImageEnhance.Brightness(img).enhance(0.85 + 0.06 * i)
        buf = io.BytesIO()
        fmt = ("JPEG", "PNG", "WEBP")[i % 3]
        img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append((f"photo{i}.{fmt.lower().replace('jpeg', 'jpg')}", buf.getvalue()))
    return out


def non_face_photo() -> tuple[str, bytes]:
    buf = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(buf, "JPEG")
    return "coffee.jpg", buf.getvalue()


def voice_clip(f0: float = 140.0, seconds: float = 5.0, syllables_per_s: float = 4.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * syllables_per_s * t))
    pad = np.zeros(int(RATE * 0.5))
    signal = np.concatenate([pad, 0.3 * voiced * envelope, pad])
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def hopper_photo() -> tuple[str, bytes]:
    """A second real face: the US Navy's public-domain portrait of Commodore Grace M.
    Hopper, shipped in matplotlib's sample data (source and licence: tests/fixtures/SOURCES.md)."""
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with open(path, "rb") as f:
        return "grace_hopper.jpg", f.read()
