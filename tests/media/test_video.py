"""The MP4 a person downloads: plays in a browser, lasts as long as the speech, and a
cancelled encode leaves nothing behind."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from myspinbot.media.ffmpeg import FfmpegError, run_ffmpeg
from myspinbot.media.video import VideoEncoder, probe, upscale_lanczos

FPS = 25
RATE = 16_000


def write_wav(path: Path, seconds: float) -> Path:
    t = np.arange(round(RATE * seconds)) / RATE
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


def frame(i: int, width: int = 128, height: int = 96) -> np.ndarray:
    """A moving bar on a red ground, so frames differ and colours can be checked."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = 200
    image[20:40, i % width : i % width + 10] = 255
    return image


def encode(path: Path, frames: int, audio: Path | None, size: tuple[int, int] = (128, 96)) -> Path:
    width, height = size
    with VideoEncoder(path, width=width, height=height, fps=FPS, audio_wav=audio) as video:
        for i in range(frames):
            video.write(frame(i, width, height))
    return path


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def decoded_audio_seconds(path: Path) -> float:
    pcm = run_ffmpeg(["-i", str(path), "-map", "0:a", "-f", "s16le", "-ac", "1", "-"])
    return len(pcm) / 2 / 48_000


@pytest.mark.parametrize("speech_s", [2.0, 2.37, 1.02])
def test_the_video_lasts_as_long_as_the_speech(tmp_path: Path, speech_s: float) -> None:
    frames = round(speech_s * FPS)
    video = encode(tmp_path / "talk.mp4", frames, write_wav(tmp_path / "voice.wav", speech_s))
    info = probe(video)
    assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (info.width, info.height, info.fps) == (128, 96, 25.0)
    assert info.frames == frames == round(info.fps * info.duration_s)
    assert abs(info.duration_s - speech_s) <= 1 / FPS
    # The sound track itself ends with the last frame (AAC's padding is not heard).
    assert abs(decoded_audio_seconds(video) - frames / FPS) < 0.005


def test_audio_longer_or_shorter_than_the_frames_is_fitted(tmp_path: Path) -> None:
    for speech_s, frames in ((3.0, 50), (1.0, 50)):
        wav = write_wav(tmp_path / f"voice{speech_s}.wav", speech_s)
        video = encode(tmp_path / f"talk{speech_s}.mp4", frames, wav)
        assert probe(video).duration_s == pytest.approx(2.0, abs=1 / FPS)
        assert decoded_audio_seconds(video) == pytest.approx(2.0, abs=0.005)


def test_the_file_starts_with_its_index_for_streaming(tmp_path: Path) -> None:
    video = encode(tmp_path / "talk.mp4", 25, write_wav(tmp_path / "voice.wav", 1.0))
    boxes = top_level_boxes(video)
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart


def test_frames_come_out_as_they_went_in(tmp_path: Path) -> None:
    video = encode(tmp_path / "talk.mp4", 10, None)
    rgb = run_ffmpeg(
        ["-i", str(video), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    )
    first = np.frombuffer(rgb, np.uint8).reshape(96, 128, 3).astype(int)
    expected = frame(0).astype(int)
    assert np.abs(first - expected).mean() < 4  # lossy, but red stays red (RGB order)
    assert probe(video).audio_codec is None


def test_odd_sizes_are_cropped_to_even(tmp_path: Path) -> None:
    video = encode(tmp_path / "odd.mp4", 5, None, size=(101, 77))
    info = probe(video)
    assert (info.width, info.height) == (100, 76)


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    encoder = VideoEncoder(tmp_path / "talk.mp4", width=128, height=96, fps=FPS, audio_wav=None)
    for i in range(20):
        encoder.write(frame(i))
    encoder.abort()
    encoder.abort()  # idempotent
    assert list(tmp_path.iterdir()) == []


def test_an_error_while_rendering_leaves_nothing(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "voice.wav", 1.0)
    with (
        pytest.raises(RuntimeError, match="animator failed"),
        VideoEncoder(tmp_path / "talk.mp4", width=128, height=96, fps=FPS, audio_wav=wav) as v,
    ):
        v.write(frame(0))
        raise RuntimeError("animator failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice.wav"]


def test_bad_frames_and_empty_videos_are_refused(tmp_path: Path) -> None:
    with VideoEncoder(tmp_path / "a.mp4", width=128, height=96, fps=FPS, audio_wav=None) as v:
        with pytest.raises(ValueError, match="96x128x3 uint8"):
            v.write(np.zeros((128, 96, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            v.write(np.zeros((96, 128, 3), np.float32))
        v.write(frame(0))
    empty = VideoEncoder(tmp_path / "b.mp4", width=128, height=96, fps=FPS, audio_wav=None)
    with pytest.raises(ValueError, match="no frames"):
        empty.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
    with pytest.raises(FileNotFoundError):
        VideoEncoder(tmp_path / "c.mp4", width=8, height=8, fps=FPS, audio_wav=tmp_path / "x.wav")


def test_probe_explains_what_is_not_a_video(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "voice.wav", 0.5)
    with pytest.raises(FfmpegError, match="has no video stream"):
        probe(wav)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(FfmpegError, match="could not read"):
        probe(junk)


def test_lanczos_upscale() -> None:
    small = np.full((64, 64, 3), 120, np.uint8)
    small[16:48, 16:48] = 200
    big = upscale_lanczos(small, 256)
    assert big.shape == (256, 256, 3) and big.dtype == np.uint8
    assert big[0, 0].tolist() == [120, 120, 120] and big[128, 128].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="square"):
        upscale_lanczos(np.zeros((64, 32, 3), np.uint8), 128)
