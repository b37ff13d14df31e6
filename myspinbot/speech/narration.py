"""A narration the person recorded themselves, used instead of text-to-speech.

Checked twice with the same rules: when it is uploaded (so a bad file is refused at
once, with a reason) and when the generate job loads it. The recording is the video's
sound as it is: decoded to mono at RECORDING_RATE, nothing trimmed or levelled.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import BinaryIO

import numpy as np

from myspinbot.errors import PermanentError
from myspinbot.media.ffmpeg import FfmpegError, run_ffmpeg
from myspinbot.speech.models import Speech

# Where an uploaded recording is kept (re-exported: the gateway and pipeline import it here).
from myspinbot.storage.layout import narration_key as narration_key

# The video's AAC track is 48 kHz; a recording keeps up to that much of its quality.
RECORDING_RATE = 48_000
# A recording whose loudest 50 ms is quieter than this holds no speech (-50 dBFS is
# room noise on a phone; speech peaks 30-40 dB higher).
SILENT_DBFS = -50.0
BLOCK_S = 0.05


class NarrationRejected(PermanentError):
    """The recording cannot narrate a video; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def decode_recording(data: bytes | BinaryIO, filename: str, max_seconds: float) -> Speech:
    """The recording (bytes, or a file read from its start in chunks) as speech (no
    timings yet); NarrationRejected says what is wrong."""
    limit = max_seconds + 1.0  # decode a little past the limit, to know it is exceeded
    with tempfile.TemporaryDirectory(prefix="myspinbot-narration-") as tmp:
        # A file, not stdin: M4A puts its index after the audio, which a pipe cannot seek to.
        path = os.path.join(tmp, "narration")
        with open(path, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                data.seek(0)
                shutil.copyfileobj(data, f)
                data.seek(0)
        args = ["-i", path, "-map", "0:a:0", "-t", f"{limit:g}", "-ac", "1"]
        args += ["-ar", str(RECORDING_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1"]
        try:
            pcm = run_ffmpeg(args)
        except FfmpegError as exc:
            if exc.returncode is None:  # ffmpeg missing or hung: ours to fix, not theirs
                raise
            raise NarrationRejected(
                f"{filename} is not an audio file we can read (WAV, MP3, OGG, FLAC or M4A)",
                status=415,
            ) from None
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768
    if samples.size == 0:
        raise NarrationRejected(f"{filename} contains no audio")
    seconds = samples.size / RECORDING_RATE
    if seconds > max_seconds:
        raise NarrationRejected(
            f"{filename} is longer than the {max_seconds:g} s limit for a narration; "
            "shorten it (MYSPINBOT_NARRATION_MAX_SECONDS sets the limit)."
        )
    block = round(BLOCK_S * RECORDING_RATE)
    n = max(1, samples.size // block)
    blocks = samples[: n * block].reshape(n, -1) if samples.size >= block else samples[None]
    loudest = float(np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=1)).max())
    if 20 * math.log10(max(loudest, 1e-9)) < SILENT_DBFS:
        raise NarrationRejected(
            f"{filename} is silent (its loudest moment is under {SILENT_DBFS:g} dBFS); "
            "record the narration again, closer to the microphone."
        )
    return Speech(samples=samples, sample_rate=RECORDING_RATE, words=None)
