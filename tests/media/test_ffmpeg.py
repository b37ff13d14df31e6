"""The ffmpeg helper: finds a binary, returns stdout, and explains failures."""

from __future__ import annotations

import os

import pytest

from myspinbot.media.ffmpeg import FfmpegError, ffmpeg_exe, run_ffmpeg


def test_ffmpeg_is_found() -> None:
    assert os.access(ffmpeg_exe(), os.X_OK)


def test_stdout_is_returned() -> None:
    source = "sine=frequency=440:sample_rate=8000:duration=0.5"
    pcm = run_ffmpeg(["-f", "lavfi", "-i", source, "-ac", "1", "-f", "s16le", "pipe:1"])
    assert len(pcm) == 8000 * 2 // 2


def test_input_is_fed_on_stdin() -> None:
    wav = run_ffmpeg(
        ["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "pipe:0", "-f", "wav", "pipe:1"],
        input=bytes(1600),
    )
    assert wav.startswith(b"RIFF") and wav[8:12] == b"WAVE"


def test_failure_carries_stderr() -> None:
    with pytest.raises(FfmpegError) as info:
        run_ffmpeg(["-i", "/nonexistent/voice.wav", "-f", "null", "-"])
    assert info.value.returncode not in (None, 0)
    assert "/nonexistent/voice.wav" in str(info.value)
    assert "No such file or directory" in str(info.value)
    assert "No such file or directory" in info.value.stderr


def test_undecodable_input_carries_stderr() -> None:
    with pytest.raises(FfmpegError, match="Invalid data found"):
        run_ffmpeg(["-i", "pipe:0", "-f", "null", "-"], input=b"this is not audio\n" * 100)


def test_a_runaway_command_is_stopped() -> None:
    # An endless source: only the timeout ends it.
    with pytest.raises(FfmpegError, match=r"timed out after 0\.5 s") as info:
        run_ffmpeg(["-f", "lavfi", "-i", "sine", "-f", "null", "-"], timeout=0.5)
    assert info.value.returncode is None
