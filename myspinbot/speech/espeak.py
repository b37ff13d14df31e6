"""espeak-ng: the weight-free, built-in engine, made to imitate a voice profile's pitch and pace.

It speaks with espeak-ng's default English voice; a profile moves its pitch (-p) and
speed (-s) towards the speaker's (see voice.profile.espeak_params). It does not clone
timbre: that is the job of a neural engine (see engine.py).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from myspinbot.speech import audio
from myspinbot.speech.models import Speech, SpeechError
from myspinbot.speech.wavstream import read_pcm16_wav
from myspinbot.voice.profile import SAMPLE_RATE, VoiceProfile, espeak_args

# espeak-ng speaks a few hundred times faster than real time: the longest narration the
# platform accepts takes a second or two. A minute means the process is wedged.
DEFAULT_TIMEOUT_S = 60.0

STDERR_TAIL_CHARS = 1000


class EspeakEngine:
    """Speech from the espeak-ng binary (the Debian package `espeak-ng`).

    Word timings are not given (words=None): the command line reports none for its own
    voices (`--pho` writes nothing unless an MBROLA voice is used, `-x` gives phonemes
    without durations). libespeak-ng's word events would give them, but only in-process,
    through a C library with global state and no timeout - not worth a worker's safety
    while nothing downstream needs more than the audio.
    """

    name = "espeak"

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def synthesize(self, text: str, voice: VoiceProfile | None) -> Speech:
        text = text.strip()
        if not text:
            raise SpeechError("There is no text to speak.")
        # None keeps espeak-ng's own defaults rather than a made-up "average" voice.
        args = espeak_args(voice) if voice is not None else []
        wav = self._run([*args, "-z", "--stdout", "--stdin", "-b", "1"], text)
        try:
            samples, rate = read_pcm16_wav(wav)
        except ValueError as exc:
            raise RuntimeError(f"espeak-ng wrote audio this engine cannot read: {exc}") from None
        samples = audio.trim_silence(audio.resample(samples, rate, SAMPLE_RATE), SAMPLE_RATE)
        if samples.size == 0:
            raise SpeechError(
                "The text produced no audible speech: it needs words espeak-ng can pronounce."
            )
        return Speech(samples=samples.astype(np.float32), sample_rate=SAMPLE_RATE, words=None)

    def _run(self, args: list[str], text: str) -> bytes:
        exe = espeak_exe()
        try:
            # The text goes on stdin, never in argv: a narration starting with "-" would
            # otherwise be read as an option, and argv has a length limit.
            proc = subprocess.run(
                [exe, *args],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # Not a SpeechError: a stalled process on a busy machine may well succeed when
            # the job is retried.
            raise TimeoutError(f"espeak-ng did not finish within {self.timeout_s:g} s") from None
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:]
            raise SpeechError(
                f"espeak-ng failed (exit status {proc.returncode}): {tail or '(no error output)'}"
            )
        return proc.stdout


def espeak_exe() -> str:
    """The espeak-ng binary on PATH, or an error that says how to install it."""
    # Looked up on every call, not cached: installing the package fixes a running worker.
    found = shutil.which("espeak-ng")
    if found is None:
        raise SpeechError(
            "The speech engine espeak-ng is not installed on this machine: install the "
            "Debian package `espeak-ng` (apt-get install espeak-ng)."
        )
    return found
