"""Writing the talking-head video: frames and narration in, a browser-playable MP4 out.

Frames are streamed to ffmpeg's stdin as they are rendered, so a long video never sits
in memory. Encoding happens in two passes:

1. frames -> H.264 video-only file, while the animator runs;
2. on close, that video (copied, not re-encoded) + the narration -> the final MP4,
   with the audio padded or trimmed to exactly frames / fps and moov moved to the
   front (`+faststart`), so a browser starts playing before the download finishes.

The second pass is what makes the lengths agree: only when the last frame is in is the
video's duration known, and a single-pass `-shortest` stops late by up to an audio
packet. AAC's encoder delay (1024 priming samples) is recorded in the MP4's edit list,
which players and ffmpeg honour, so the audio track ends with the video.

Both passes write to hidden files next to the destination, and the destination appears
only when it is complete (a rename), so a cancelled or failed job leaves nothing that
looks like a video.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import cv2
import numpy as np
import numpy.typing as npt

from myspinbot.media.ffmpeg import STDERR_TAIL_CHARS, FfmpegError, ffmpeg_exe, run_ffmpeg

# x264 settings: `veryfast` keeps encoding well ahead of real time on two cores at
# 512x512; CRF 20 is visually clean for a face on a plain background (each step of 6
# halves or doubles the size). `high` profile + yuv420p is what every browser decodes.
PRESET = "veryfast"
CRF = 20
AUDIO_RATE = 48_000  # AAC's native rate in browsers; TTS output (16-24 kHz) is resampled
AUDIO_BITRATE = "128k"

# Bounds on waiting for ffmpeg. The encoder has the whole video's frames buffered at
# most a few seconds behind; the mux copies the video and encodes only the audio.
CLOSE_TIMEOUT_S = 300.0
MUX_TIMEOUT_S = 300.0
PROBE_TIMEOUT_S = 120.0


class VideoEncoder:
    """An MP4 being written, one frame at a time. Use as a context manager:

        with VideoEncoder(path, width=512, height=512, fps=25, audio_wav=wav) as video:
            for frame in frames:
                video.write(frame)
        # closed (finished) on normal exit, aborted (file removed) on an exception

    Odd sizes are accepted: H.264 in yuv420p needs even sides, so the last column or
    row is dropped (`output_size`).
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: int,
        audio_wav: Path | None,
        preset: str = PRESET,
        crf: int = CRF,
    ) -> None:
        if width < 2 or height < 2:
            raise ValueError(f"video must be at least 2x2 pixels, not {width}x{height}")
        if fps < 1:
            raise ValueError(f"fps must be at least 1, not {fps}")
        if audio_wav is not None and not Path(audio_wav).is_file():
            raise FileNotFoundError(f"narration audio {audio_wav} does not exist")
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.audio_wav = None if audio_wav is None else Path(audio_wav)
        self.output_size = (width - width % 2, height - height % 2)
        self.frames = 0
        self._closed = False
        tag = uuid.uuid4().hex[:8]
        self._video_part = self.path.with_name(f".{self.path.name}.{tag}.video.mp4")
        self._final_part = self.path.with_name(f".{self.path.name}.{tag}.part.mp4")
        # ffmpeg's stderr goes to a file, not a pipe: nobody reads it while frames are
        # written, and a full pipe would block ffmpeg and then us. It lives as long as
        # the encoder (closed in close/abort), hence no `with`.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        out_w, out_h = self.output_size
        argv = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-framerate", str(fps), "-i", "pipe:0",
            "-an", "-vf", f"crop={out_w}:{out_h}:0:0",
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
            "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-f", "mp4", str(self._video_part),
        ]  # fmt: skip
        try:
            self._proc: subprocess.Popen[bytes] = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except OSError as exc:
            self._stderr.close()
            raise FfmpegError(f"ffmpeg could not be started: {exc}") from exc

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    @property
    def duration_s(self) -> float:
        """Length of the video written so far."""
        return self.frames / self.fps

    def write(self, frame: npt.NDArray[np.uint8]) -> None:
        """Append one H x W x 3 uint8 RGB frame."""
        if self._closed:
            raise RuntimeError("the video is already closed")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be {self.height}x{self.width}x3 uint8 RGB, "
                f"not {'x'.join(map(str, frame.shape))} {frame.dtype}"
            )
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, ValueError):
            # ffmpeg has exited (bad argument, full disk): its stderr says why.
            self._proc.wait()
            message = self._failure("ffmpeg stopped accepting frames")
            self.abort()
            raise FfmpegError(message, returncode=self._proc.returncode) from None
        self.frames += 1

    def close(self) -> Path:
        """Finish the video: wait for the encoder, add the narration, publish the file."""
        if self._closed:
            return self.path
        if self.frames == 0:
            self.abort()
            raise ValueError("no frames were written; a video needs at least one")
        assert self._proc.stdin is not None
        try:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            try:
                returncode = self._proc.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise FfmpegError(
                    f"ffmpeg did not finish encoding within {CLOSE_TIMEOUT_S:g} s"
                ) from None
            if returncode != 0:
                raise FfmpegError(
                    self._failure(f"ffmpeg exited with status {returncode}"),
                    returncode=returncode,
                )
            self._mux()
            os.replace(self._final_part, self.path)
        except BaseException:
            self.abort()
            raise
        finally:
            self._stderr.close()
            self._video_part.unlink(missing_ok=True)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete everything written; the destination is not created.

        Safe to call more than once; after a successful close it does nothing (the
        finished video belongs to the caller).
        """
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        self._proc.wait()
        self._stderr.close()
        self._video_part.unlink(missing_ok=True)
        self._final_part.unlink(missing_ok=True)

    def _failure(self, what: str) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            text = ""
        if len(text) > STDERR_TAIL_CHARS:
            text = "..." + text[-STDERR_TAIL_CHARS:]
        return f"{what}: {text or '(no error output)'}"

    def _mux(self) -> None:
        """Video + narration (padded or trimmed to the video's length) -> final MP4."""
        args = ["-y", "-i", str(self._video_part)]
        if self.audio_wav is None:
            args += ["-map", "0:v:0", "-c:v", "copy"]
        else:
            samples = round(self.frames * AUDIO_RATE / self.fps)
            args += [
                "-i", str(self.audio_wav),
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                # apad makes the narration endless, atrim cuts it at the last frame.
                "-af", f"aresample={AUDIO_RATE},apad,atrim=end_sample={samples}",
                "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(AUDIO_RATE),
            ]  # fmt: skip
        args += ["-movflags", "+faststart", "-f", "mp4", str(self._final_part)]
        run_ffmpeg(args, timeout=MUX_TIMEOUT_S)


@dataclass(frozen=True)
class VideoInfo:
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    fps: float
    frames: int  # counted by decoding every frame, not read from the header
    duration_s: float  # the container's duration
    pix_fmt: str = ""


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)[^,\n]*, (\w+)[^\n]*?, (\d+)x(\d+)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")
_FPS = re.compile(r"([\d.]+) fps")
_FRAME = re.compile(r"^frame=(\d+)$", re.MULTILINE)


def probe(path: Path) -> VideoInfo:
    """Codecs, size, rate and length of a video file, by decoding it with ffmpeg.

    (The bundled ffmpeg comes without ffprobe: the stream descriptions come from the
    input summary ffmpeg prints, the frame count from decoding the video to nowhere.)
    """
    argv = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
        "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, stdin=None
        )
    except subprocess.TimeoutExpired:
        raise FfmpegError(f"probing {path} took over {PROBE_TIMEOUT_S:g} s") from None
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0 and "matches no streams" in stderr:
        raise FfmpegError(f"{path} has no video stream", returncode=proc.returncode)
    if proc.returncode != 0:
        tail = stderr.strip()[-STDERR_TAIL_CHARS:]
        raise FfmpegError(
            f"ffmpeg could not read {path}: {tail}", returncode=proc.returncode, stderr=tail
        )
    # Only the input summary: the output section describes the null muxer's streams.
    summary = re.split(r"^Output #0|^Stream mapping:", stderr, maxsplit=1, flags=re.MULTILINE)[0]
    video = _VIDEO.search(summary)
    if video is None:
        raise FfmpegError(f"{path} has no video stream", stderr=summary[-STDERR_TAIL_CHARS:])
    video_line = summary[video.start() : summary.find("\n", video.start())]
    fps = _FPS.search(video_line)
    audio = _AUDIO.search(summary)
    duration = _DURATION.search(summary)
    frames = _FRAME.findall(proc.stdout.decode("ascii", errors="replace"))
    hours, minutes, seconds = duration.groups() if duration else ("0", "0", "0")
    return VideoInfo(
        video_codec=video.group(1),
        audio_codec=audio.group(1) if audio else None,
        width=int(video.group(3)),
        height=int(video.group(4)),
        fps=float(fps.group(1)) if fps else 0.0,
        frames=int(frames[-1]) if frames else 0,
        duration_s=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        pix_fmt=video.group(2),
    )


def upscale_lanczos(frame: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """A square frame resized to `size` x `size` with Lanczos (8x8 taps) resampling.

    The baseline a learned upscaler has to beat: sharp, without ringing worth noticing
    at up to 4x.
    """
    if frame.ndim != 3 or frame.shape[0] != frame.shape[1]:
        raise ValueError(f"frame must be square H x W x C, not {frame.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    if frame.shape[0] == size:
        return frame.copy()
    # Shrinking is not what this is for, but area averaging is the right filter for it.
    interpolation = cv2.INTER_LANCZOS4 if size > frame.shape[0] else cv2.INTER_AREA
    resized = cv2.resize(frame, (size, size), interpolation=interpolation)
    return np.asarray(resized, dtype=np.uint8)
