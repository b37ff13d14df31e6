"""flite: CMU's small synthesizer (Debian `flite`, BSD-style licence) and its US English voices.

slt (female), rms and awb (male) are unit-selection/statistical-parametric voices built
from CMU ARCTIC recordings: far more natural and intelligible than espeak-ng's formant
voice (a standard recogniser's word error rate on them is a third of espeak-ng's), and
still fast and weight-free. kal16 is an older diphone voice, kept as a choice.

A profile's voice match (voice.matching) names the base voice nearest to the person and
the speaking-rate stretch; its conversion then moves the result toward their voice.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from myspinbot.speech import audio
from myspinbot.speech.models import Speech, SpeechError
from myspinbot.speech.wavstream import read_pcm16_wav
from myspinbot.voice.analysis import FloatArray
from myspinbot.voice.profile import SAMPLE_RATE, VoiceProfile

# The voices this module offers, best first (the default is the first one installed).
VOICES = ("slt", "rms", "awb", "kal16")
DEFAULT_TIMEOUT_S = 60.0
STDERR_TAIL_CHARS = 1000
# flite's duration_stretch beyond these sounds broken rather than slow or fast.
MIN_STRETCH, MAX_STRETCH = 0.6, 1.8


def flite_exe() -> str:
    found = shutil.which("flite")
    if found is None:
        raise SpeechError(
            "The speech engine flite is not installed on this machine: install the Debian "
            "package `flite` (apt-get install flite)."
        )
    return found


@lru_cache(maxsize=4)
def _listed_voices(exe: str) -> tuple[str, ...]:
    out = subprocess.run([exe, "-lv"], capture_output=True, timeout=10, check=False).stdout
    # "Voices available: kal awb_time kal16 awb rms slt"
    return tuple(out.decode(errors="replace").split(":", 1)[-1].split())


def installed_voices() -> list[str]:
    """The VOICES this machine's flite has (empty when flite is missing)."""
    exe = shutil.which("flite")
    if exe is None:
        return []
    listed = set(_listed_voices(exe))
    return [v for v in VOICES if v in listed]


def check_voice(name: str) -> str:
    """`name`, if flite has that voice here; a SpeechError listing the choices otherwise."""
    voices = installed_voices() if shutil.which("flite") else []
    flite_exe()
    if name not in voices:
        raise SpeechError(
            f"Unknown flite voice `{name}`; this machine has: {', '.join(voices) or 'none'}."
        )
    return name


def speak(
    text: str, voice: str, stretch: float = 1.0, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[FloatArray, int]:
    """Raw flite output: (samples, rate); not trimmed or resampled."""
    text = text.strip()
    if not text:
        raise SpeechError("There is no text to speak.")
    exe = flite_exe()
    stretch = float(np.clip(stretch, MIN_STRETCH, MAX_STRETCH))
    with tempfile.TemporaryDirectory(prefix="myspinbot-flite-") as tmp:
        # Text through a file: argv has a length limit and a text starting with "-" would
        # be read as an option.
        src, out = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        src.write_text(text, encoding="utf-8")
        args = [exe, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
        try:
            proc = subprocess.run(
                [*args, "-f", str(src), "-o", str(out)],
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"flite did not finish within {timeout_s:g} s") from None
        if proc.returncode != 0 or not out.exists():
            tail = proc.stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:]
            raise SpeechError(
                f"flite failed (exit status {proc.returncode}): {tail or '(no error output)'}"
            )
        try:
            return read_pcm16_wav(out.read_bytes())
        except ValueError as exc:
            raise RuntimeError(f"flite wrote audio this engine cannot read: {exc}") from None


class FliteEngine:
    """Speech from the flite binary, in the profile's matched voice, converted toward it."""

    name = "flite"

    def __init__(self, voice: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        installed = installed_voices()
        flite_exe()
        if not installed:
            raise SpeechError("flite is installed but has none of the voices " + ", ".join(VOICES))
        # A configured voice is checked now, at configuration time, not when a job runs.
        self.voice = check_voice(voice) if voice else None
        self.default_voice = installed[0]
        self.timeout_s = timeout_s

    def synthesize(self, text: str, voice: VoiceProfile | None) -> Speech:
        from myspinbot.voice.conversion import convert

        match = voice.match if voice is not None else None
        use_match = (
            match is not None
            and match.engine == self.name
            and self.voice in (None, match.base_voice)
        )
        base = (
            self.voice or (match.base_voice if use_match and match else None) or self.default_voice
        )
        stretch = match.stretch if use_match and match else 1.0
        samples, rate = speak(text, base, stretch, self.timeout_s)
        if use_match and match is not None and match.conversion is not None:
            samples, rate = convert(samples, rate, match.conversion), match.conversion.sample_rate
        samples = audio.trim_silence(audio.resample(samples, rate, SAMPLE_RATE), SAMPLE_RATE)
        if samples.size == 0:
            raise SpeechError(
                "The text produced no audible speech: it needs words flite can pronounce."
            )
        return Speech(samples=samples.astype(np.float32), sample_rate=SAMPLE_RATE, words=None)
