"""Running the ffmpeg binary: one place that finds it, bounds it and explains its failures."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence

# Long enough to transcode a few minutes of audio on a slow CPU, short enough that a
# wedged process (a malformed file that makes a demuxer spin) cannot hold a worker.
DEFAULT_TIMEOUT_S = 120.0

# ffmpeg's stderr can run to megabytes on a bad file; the last lines say what went wrong.
STDERR_TAIL_CHARS = 2000


class FfmpegError(RuntimeError):
    """ffmpeg is missing, failed or timed out; the message carries the end of its stderr."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


@functools.cache
def ffmpeg_exe() -> str:
    """Path to an ffmpeg binary: imageio-ffmpeg's bundled build, else one on PATH."""
    try:
        import imageio_ffmpeg

        # The bundled build is preferred: its codec set (libx264, aac, ...) is known,
        # whereas a distribution ffmpeg may lack encoders.
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found is None:
        raise FfmpegError("ffmpeg was not found: install imageio-ffmpeg or put ffmpeg on PATH")
    return found


def _tail(stderr: bytes) -> str:
    text = stderr.decode("utf-8", errors="replace").strip()
    if len(text) > STDERR_TAIL_CHARS:
        text = "..." + text[-STDERR_TAIL_CHARS:]
    return text


def run_ffmpeg(
    args: Sequence[str], input: bytes | None = None, *, timeout: float = DEFAULT_TIMEOUT_S
) -> bytes:
    """Run ffmpeg with `args` (no program name), feeding `input` on stdin; return stdout.

    Raises FfmpegError, with the tail of ffmpeg's stderr, on a non-zero exit or timeout.
    """
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    try:
        proc = subprocess.run(
            argv,
            input=input,
            # Without input, stdin must not be inherited: ffmpeg would read the worker's
            # terminal or pipe and can hang or swallow its data.
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        tail = _tail(exc.stderr or b"")
        raise FfmpegError(
            f"ffmpeg timed out after {timeout:g} s" + (f": {tail}" if tail else ""), stderr=tail
        ) from None
    if proc.returncode != 0:
        tail = _tail(proc.stderr)
        raise FfmpegError(
            f"ffmpeg exited with status {proc.returncode}: {tail or '(no error output)'}",
            returncode=proc.returncode,
            stderr=tail,
        )
    return proc.stdout
