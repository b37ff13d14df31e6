"""A person's own narration recording, end to end on the real platform: uploaded with
POST /api/narrations, it narrates the video (its audio IS the recording), and with its
transcript the aligner's phonemes shape the lips. Bad recordings get a readable 4xx.

Real parts: `myspinbot up` with the generate function, Redis, S3, ffmpeg, pocketsphinx
and the face mesh. The "recording" is Debian's flite reading a text (no openly licensed
human narration with a transcript installs from the registries); the upload path does
not know or care which voice it is.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from myspinbot.media.ffmpeg import run_ffmpeg
from myspinbot.media.video import probe
from tests.animate.lipsync_support import (
    BILABIAL_TEXT,
    FPS,
    bilabial_groups,
    decode,
    flite,
    frames_during,
    measure,
    needs_flite,
    prepared,
    smiling_photo,
    wav_bytes,
)
from tests.functions.test_train_function import follow
from tests.support import FUNCTIONS, ROOT, RunningPlatform

pytestmark = needs_flite
MAX_SECONDS = 20


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / n for n in ("status", "ws-relay", "generate")]
    env = {"MYSPINBOT_VIDEO_SIZE": "512", "MYSPINBOT_NARRATION_MAX_SECONDS": str(MAX_SECONDS)}
    p = RunningPlatform(tmp_path_factory.mktemp("narration"), functions=functions, env=env)
    yield p.start()
    assert p.stop() == 0


@pytest.fixture(scope="module")
def portrait_id(platform: RunningPlatform) -> str:
    buf = io.BytesIO()
    prepared(smiling_photo()).save(buf, "PNG")
    resp = platform.post("/api/portraits", files={"image": ("eileen.png", buf.getvalue())})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["portraitId"])


def upload(p: RunningPlatform, name: str, data: bytes) -> httpx.Response:
    return p.post("/api/narrations", files={"audio": (name, data)})


def recording(text: str) -> tuple[bytes, np.ndarray, int]:
    """What a person would upload: an OGG/Vorbis file of the narration."""
    samples, rate = flite(text)
    pad = np.zeros(rate // 2, np.float32)
    samples = np.concatenate([pad, samples, pad])
    args = ["-f", "wav", "-i", "pipe:0", "-c:a", "libvorbis", "-q:a", "6", "-f", "ogg", "pipe:1"]
    return run_ffmpeg(args, input=wav_bytes(samples, rate)), samples, rate


def generate(p: RunningPlatform, **body: Any) -> str:
    resp = p.post("/api/generate", json={"mode": "direct", **body})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["jobId"])


def audio_of(video: Path, rate: int) -> np.ndarray:
    pcm = run_ffmpeg(["-i", str(video), "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"])
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float32) / 32768


def envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    block = rate // 100
    n = len(samples) // block
    return np.sqrt(np.mean(samples[: n * block].reshape(n, block) ** 2, axis=1))


def test_an_uploaded_recording_narrates_a_lip_synced_video(
    platform: RunningPlatform, portrait_id: str, tmp_path: Path
) -> None:
    ogg, samples, rate = recording(BILABIAL_TEXT)
    resp = upload(platform, "my-narration.ogg", ogg)
    assert resp.status_code == 201, resp.text
    narration_id = resp.json()["narrationId"]
    assert abs(resp.json()["durationSeconds"] - len(samples) / rate) < 0.1

    options = {"portraitImage": portrait_id, "narrationAudio": narration_id}
    job_id = generate(platform, narration=BILABIAL_TEXT, options=options)
    messages = follow(platform, job_id)
    assert messages[-1]["state"] == "completed", messages[-1]
    assert any("narration recording" in (m.get("message") or "") for m in messages)
    result = platform.status(job_id)["result"]
    assert result["speechEngine"] == "recording"
    assert result["animator"] == "landmark"
    assert result["lipSync"] == {"mode": "phonemes"}

    video = tmp_path / "video.mp4"
    video.write_bytes(httpx.get(result["video"]["url"], timeout=60).content)
    info = probe(video)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert abs(info.duration_s - len(samples) / rate) <= 1 / FPS
    # The video's sound is the recording: its loudness contour matches, 10 ms by 10 ms.
    heard = envelope(audio_of(video, rate), rate)
    spoken = envelope(samples, rate)
    n = min(len(heard), len(spoken))
    assert np.corrcoef(heard[:n], spoken[:n])[0, 1] > 0.95

    # The lips meet for the p/b/m the recording says (measured on the video).
    from myspinbot.speech.align import align

    frames = decode(video)
    measured = measure(np.asarray(prepared(smiling_photo())), frames)
    gaps = measured.gaps
    groups = bilabial_groups(align(samples, rate, BILABIAL_TEXT))
    open_value = float(np.percentile(gaps[: len(gaps)], 90))
    closed = [min(gaps[i] for i in frames_during(a - 0.04, b, len(gaps))) < 0.2 * open_value
              for a, b in groups]  # fmt: skip
    assert sum(closed) / len(groups) >= 0.6


def test_without_a_transcript_the_mouth_follows_loudness(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    """Through the CLI: `myspinbot generate --narration-audio FILE --portrait FILE`."""
    ogg, _, _ = recording("Hello. This recording has no transcript.")
    audio, photo = tmp_path / "hello.ogg", tmp_path / "me.png"
    audio.write_bytes(ogg)
    prepared(smiling_photo()).save(photo)
    env = platform.cli_env()
    args = ["generate", "--narration-audio", str(audio), "--portrait", str(photo)]
    out = subprocess.run(
        [sys.executable, "-m", "myspinbot", *args], env=env, capture_output=True, text=True,
        timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    job_id = next(j["jobId"] for j in platform.get("/api/jobs").json()["jobs"])
    final = platform.status(job_id)
    assert final["state"] == "completed", final
    result = final["result"]
    assert result["script"] is None and result["speechEngine"] == "recording"
    assert result["lipSync"]["mode"] == "loudness"
    assert "No transcript" in result["lipSync"]["note"]
    assert "script.json" not in {a["name"] for a in result["artifacts"]}


def test_bad_recordings_get_readable_4xx(platform: RunningPlatform, portrait_id: str) -> None:
    resp = upload(platform, "notes.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    assert resp.status_code == 415 and resp.json()["field"] == "audio"
    assert "notes.wav" in resp.json()["error"]
    resp = upload(platform, "notes.txt", b"just some text, not audio")
    assert resp.status_code == 415

    silent = wav_bytes(np.zeros(16_000 * 3, np.float32), 16_000)
    resp = upload(platform, "silent.wav", silent)
    assert resp.status_code == 422 and "silent" in resp.json()["error"]

    tone = 0.3 * np.sin(np.arange(16_000 * (MAX_SECONDS + 2)) * 2 * np.pi * 220 / 16_000)
    resp = upload(platform, "long.wav", wav_bytes(tone.astype(np.float32), 16_000))
    assert resp.status_code == 422
    assert f"longer than the {MAX_SECONDS} s limit" in resp.json()["error"]

    body = {"mode": "direct", "options": {"narrationAudio": "0" * 32}}
    resp = platform.post("/api/generate", json=body)
    assert resp.status_code == 422 and "POST /api/narrations" in resp.json()["error"]
    body = {"mode": "guided", "prompt": "x", "options": {"narrationAudio": "0" * 32}}
    resp = platform.post("/api/generate", json=body)
    assert resp.status_code == 422 and "direct mode" in resp.json()["error"]
    resp = platform.post("/api/generate", json={"mode": "direct"})
    assert resp.status_code == 422 and "narration" in resp.json()["error"]


def test_cancel_during_animation_leaves_no_video(
    platform: RunningPlatform, portrait_id: str
) -> None:
    ogg, _, _ = recording(" ".join([BILABIAL_TEXT] * 2))
    narration_id = upload(platform, "long.ogg", ogg).json()["narrationId"]
    options = {"portraitImage": portrait_id, "narrationAudio": narration_id}
    job_id = generate(platform, narration=BILABIAL_TEXT, options=options)
    sent = []

    def cancel_in_animation(msg: dict[str, Any]) -> None:
        if msg.get("step") == "animate" and not sent:
            sent.append(platform.post(f"/api/jobs/{job_id}/cancel").status_code)

    messages = follow(platform, job_id, on_message=cancel_in_animation)
    assert sent == [202] and messages[-1]["state"] == "cancelled"
    store = platform.store()
    assert store.list_keys(f"generations/{job_id}/") == []
