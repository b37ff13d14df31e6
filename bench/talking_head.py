"""How fast a narrated talking-head video is made on this machine, step by step.

For a narration of about --seconds (default 20) at --size (512) and --fps (25), times:

1. speech synthesis (myspinbot.speech's configured engine, in the voice matched to a real
   person's clip — codec2-examples' Harvard sentences, or --voice-clip — so flite's output
   goes through the voice conversion as in a profile's video; espeak-ng directly if that
   package is missing; a synthetic syllable-rate voice, clearly labelled, if neither);
   the match itself is learnt once per profile, at training, and timed on its own row;
2. forced alignment of the speech to its text (pocketsphinx: the phoneme timeline);
3. face landmarks on the portrait (MediaPipe's face mesh through OpenCV dnn);
4. animation with the landmark animator (the default: lip shapes per phoneme) and, as
   the baseline in the same run, with the weight-free animator (loudness only);
   frames kept in memory so that encoding can be timed on its own;
5. encoding those frames with the narration into the final MP4;
6. the whole default path streamed as the pipeline runs it: speech (with conversion),
   alignment, landmark animation and encode.

and prints, per step, the median wall seconds of --repeat runs (3) and seconds of
video made per wall second (x real time: above 1 is faster than real time). A script,
not a test: it asserts nothing. On a shared machine, read it with the load average.

    .venv/bin/python bench/talking_head.py [--seconds 20] [--size 512] [--fps 25]
        [--repeat 3] [--portrait photo.jpg] [--voice-clip clip.wav|none] [--keep out.mp4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from myspinbot.animate import LandmarkAnimator, WeightFreeAnimator  # noqa: E402
from myspinbot.animate.landmarks import FaceMesh  # noqa: E402
from myspinbot.media.video import VideoEncoder, probe  # noqa: E402
from myspinbot.speech.align import align  # noqa: E402

T = TypeVar("T")

# A real person's voice to match (codec2-examples, LGPL-2.1; tests/fixtures/SOURCES.md).
HARVARD = Path("/usr/share/codec2/raw/speech_orig_16k.wav")
HARVARD_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue "
    "background. It's easy to tell the depth of a well. Four hours of steady work faced us."
)

# About 10 s at espeak-ng's default 175 words per minute; repeated to reach --seconds.
TEXT = (
    "Hello, and welcome to this short update. Today I want to tell you about three "
    "things we changed this month, why they matter to you, and what comes next. "
    "Let us get started."
)


def timed(fn: Callable[[], T], repeat: int) -> tuple[T, float]:
    """fn's result and its median wall time over `repeat` runs."""
    walls = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - start)
    return result, statistics.median(walls)


def synthetic_voice(seconds: float, rate: int = 16_000) -> np.ndarray:
    """Voiced syllables at 4 Hz in phrases with pauses: speech-like loudness, no words."""
    t = np.arange(round(rate * seconds)) / rate
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    syllables = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    phrases = (t % 3.0) < 2.4  # 2.4 s phrases, 0.6 s pauses
    return (0.3 * voiced * syllables * phrases).astype(np.float32)


def narration_text(seconds: float) -> str:
    """TEXT repeated to about `seconds` of speech (TEXT is about 10 s)."""
    return " ".join([TEXT] * max(1, round(seconds / 10)))


def learn_voice(clip: str) -> tuple[Any, float]:
    """The voice profile (with its match) training makes from `clip`, and the wall time;
    (None, 0) where there is no clip or no matching engine."""
    from myspinbot.settings import Settings
    from myspinbot.voice.build import build_matched_voice, matching_applies

    path = Path(clip)
    if clip == "none" or not path.exists() or not matching_applies(Settings()):
        return None, 0.0
    text = HARVARD_TEXT if path == HARVARD else None
    start = time.perf_counter()
    built = build_matched_voice(path.read_bytes(), path.name, text, Settings())
    return built.profile, time.perf_counter() - start


def synthesize(seconds: float, profile: Any = None) -> tuple[np.ndarray, int, str]:
    """Narration audio, its rate, and which engine made it (in the profile's voice)."""
    text = narration_text(seconds)
    try:
        from myspinbot.settings import Settings
        from myspinbot.speech import get_engine

        settings = Settings()
        speech = get_engine(settings).synthesize(text, profile)
        converted = " + conversion" if profile is not None and profile.match else ""
        return speech.samples, speech.sample_rate, settings.tts_engine + converted
    except Exception as exc:  # missing module, missing binary: fall through, say why
        reason = f"{type(exc).__name__}: {exc}"
    exe = shutil.which("espeak-ng")
    if exe is not None:
        wav = subprocess.run([exe, "--stdout", text], capture_output=True, check=True).stdout
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            f.write(wav)
            f.flush()
            with wave.open(f.name) as w:
                rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return (pcm / 32768).astype(np.float32), rate, "espeak-ng (subprocess)"
    return (
        synthetic_voice(seconds),
        16_000,
        f"SYNTHETIC stand-in, no TTS here ({reason[:60]})",
    )


def load_portrait(path: str | None, size: int) -> Image.Image:
    if path:
        image = Image.open(path).convert("RGB")
    else:
        from myspinbot.training.dataset import prepare_dataset
        from tests.media_fixtures import face_photos

        image = prepare_dataset(face_photos(1), resolution=size, trigger_token="ohwx")
        image = image.images[0].image
    return image.resize((size, size), Image.Resampling.LANCZOS)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def encode(path: Path, frames: Any, size: int, fps: int, wav: Path) -> int:
    with VideoEncoder(path, width=size, height=size, fps=fps, audio_wav=wav) as video:
        for frame in frames:
            video.write(frame)
        return video.frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--portrait", help="photo to animate (default: the astronaut)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step (median)")
    parser.add_argument(
        "--voice-clip",
        default=str(HARVARD),
        help="a person's clip to match the voice to (default: the Harvard sentences); none: "
        "the engine's plain voice",
    )
    parser.add_argument("--keep", help="also save the streamed default-path video here")
    args = parser.parse_args()

    portrait = load_portrait(args.portrait, args.size)
    text = narration_text(args.seconds)
    profile, t_match = learn_voice(args.voice_clip)
    (samples, rate, engine), t_speech = timed(
        lambda: synthesize(args.seconds, profile), args.repeat
    )
    speech_s = len(samples) / rate
    alignment, t_align = timed(lambda: align(samples, rate, text), args.repeat)
    still = np.asarray(portrait.convert("RGB"))
    landmarks, t_landmarks = timed(lambda: FaceMesh().locate(still), args.repeat)
    landmark = LandmarkAnimator()
    weightfree = WeightFreeAnimator()

    def animate(animator: Any) -> list[np.ndarray]:
        return list(animator.animate(portrait, samples, rate, args.fps, None, alignment.phonemes))

    # Interleaved, so that both animators see the same load.
    walls: dict[str, list[float]] = {"landmark": [], "weightfree": []}
    frames: list[np.ndarray] = []
    for _ in range(max(1, args.repeat)):
        for animator in (landmark, weightfree):
            start = time.perf_counter()
            frames = animate(animator)
            walls[animator.name].append(time.perf_counter() - start)
            if animator is weightfree:
                frames.clear()
    frames = animate(landmark)
    t_landmark = statistics.median(walls["landmark"])
    t_weightfree = statistics.median(walls["weightfree"])
    video_s = len(frames) / args.fps

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "voice.wav"
        write_wav(wav, samples, rate)
        out = Path(tmp) / "encoded.mp4"
        _, t_encode = timed(lambda: encode(out, frames, args.size, args.fps, wav), args.repeat)
        frames.clear()  # free ~400 MB before the streamed runs
        streamed = Path(args.keep) if args.keep else Path(tmp) / "streamed.mp4"

        def default_path() -> None:
            voice, voice_rate, _ = synthesize(args.seconds, profile)
            timeline = align(voice, voice_rate, text).phonemes
            write_wav(wav, voice, voice_rate)
            animator = LandmarkAnimator()
            stream = animator.animate(portrait, voice, voice_rate, args.fps, None, timeline)
            encode(streamed, stream, args.size, args.fps, wav)

        _, t_path = timed(default_path, args.repeat)
        info = probe(streamed)

    rows = [
        (f"speech synthesis ({engine})", t_speech, speech_s),
        *([("voice match (once per profile, at training)", t_match, None)] if profile else []),
        (f"alignment (pocketsphinx, {len(alignment.phonemes)} phones)", t_align, speech_s),
        ("landmarks (face mesh, once per portrait)", t_landmarks, video_s),
        ("animation: landmark (new default)", t_landmark, video_s),
        ("animation: weightfree (baseline, same run)", t_weightfree, video_s),
        ("encode (x264 veryfast + AAC, faststart)", t_encode, video_s),
        (f"default path: speech ({engine}) + alignment + landmarks + encode", t_path, video_s),
    ]
    load = os.getloadavg()
    print(f"median of {args.repeat} runs per step")
    print(f"narration: {speech_s:.2f} s from {engine}; phone pass: {alignment.phone_pass}")
    print(
        f"portrait: {args.size}x{args.size}, face mesh found: {landmarks is not None}, "
        f"lip sync: {landmark.last_mode}"
    )
    print(
        f"video: {info.video_codec}/{info.audio_codec} {info.width}x{info.height} "
        f"{info.fps:g} fps, {info.frames} frames, {info.duration_s:.2f} s"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f}")
    print()
    print("| step | wall s | x real time |")
    print("|---|---:|---:|")
    for step, wall, media_s in rows:
        rate_cell = f"{media_s / wall:.1f}x" if media_s is not None else "one-off"
        print(f"| {step} | {wall:.2f} | {rate_cell} |")


if __name__ == "__main__":
    main()
