"""The train function end to end on the real platform (tiny preset, CPU): photos and
a voice clip in, a loadable LoRA and a voice profile out."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from myspinbot.storage import ArtifactStore
from tests.media_fixtures import face_photos, non_face_photo, voice_clip
from tests.support import FUNCTIONS, RunningPlatform, wait_for

TRAIN = {"rank": 4, "seed": 7, "learningRate": 1e-3}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / "status", FUNCTIONS / "ws-relay", FUNCTIONS / "train"]
    p = RunningPlatform(tmp_path_factory.mktemp("train"), functions=functions).start()
    yield p
    assert p.stop() == 0


def submit(
    p: RunningPlatform,
    options: dict[str, Any],
    photos: list[tuple[str, bytes]] | None = None,
    voice: bytes | None = None,
) -> str:
    files: list[Any] = [("images", (n, d)) for n, d in (photos or face_photos(6))]
    if voice is not None:
        files.append(("voice", ("voice.wav", voice, "audio/wav")))
    data = {"name": "Eileen", "voice_text": "Hello from orbit", "options": json.dumps(options)}
    resp = p.post("/api/train", files=files, data=data)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["jobId"])


def follow(
    p: RunningPlatform, job_id: str, on_message: Any = None, timeout: float = 600
) -> list[dict[str, Any]]:
    """Every WebSocket message of a job until it ends; reconnects with lastEventId."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with p.ws() as ws:
                sub: dict[str, Any] = {"type": "subscribe", "jobId": job_id}
                if got and got[-1].get("eventId"):
                    sub["lastEventId"] = got[-1]["eventId"]
                ws.send(json.dumps(sub))
                while True:
                    msg = json.loads(ws.recv(timeout=deadline - time.monotonic()))
                    got.append(msg)
                    if on_message:
                        on_message(msg)
                    if msg.get("state") in {"completed", "failed", "cancelled"}:
                        return got
        except (OSError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end; last: {got[-1:]}")


def store(p: RunningPlatform) -> ArtifactStore:
    return p.store()


def render(pipe: Any, seed: int = 0) -> np.ndarray:
    import torch

    out = pipe(
        "a photo of sks person",
        num_inference_steps=3,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return np.asarray(out.images[0])


def test_train_produces_a_loadable_profile(platform: RunningPlatform, tmp_path: Path) -> None:
    job_id = submit(platform, {**TRAIN, "steps": 40}, voice=voice_clip(150.0))
    msgs = follow(platform, job_id)
    final = msgs[-1]
    assert final["state"] == "completed", final
    progress = [m["progress"] for m in msgs]
    assert progress == sorted(progress), "progress went backwards"
    train_events = [
        m for m in msgs if m["type"] == "progress" and m.get("step") == "train" and m.get("metrics")
    ]
    assert train_events, "no training progress events"
    for m in train_events:
        assert {"step", "totalSteps", "loss", "itPerS"} <= set(m["metrics"])
        assert m["etaSeconds"] is not None

    status = platform.status(job_id)
    result = status["result"]
    assert result["profileId"] and result["baseModel"]["placeholder"] is True
    assert result["images"]["used"] == 6 and result["voice"]["median_pitch_hz"] > 0
    names = {a["name"]: a for a in result["artifacts"]}
    assert {
        "pytorch_lora_weights.safetensors",
        "kohya_lora.safetensors",
        "metadata.json",
        "portrait.png",
    } <= set(names)
    for a in result["artifacts"]:
        if a.get("url"):
            assert httpx.get(a["url"]).status_code == 200, a["name"]
    for name in ("pytorch_lora_weights.safetensors", "kohya_lora.safetensors"):
        (tmp_path / name).write_bytes(httpx.get(names[name]["url"]).content)
    meta = json.loads(httpx.get(names["metadata.json"]["url"]).content)
    assert meta["steps"] == 40 and meta["rank"] == 4 and meta["triggerToken"] == "sks"

    profiles = platform.get("/api/profiles").json()["profiles"]
    listed = next(pr for pr in profiles if pr["id"] == result["profileId"])
    # The profile is the training job's owner's (here the owner account).
    assert listed["owner"] == platform.get("/api/me").json()["id"]
    # Freshly signed download links on every listing (a stored link would expire).
    lora = next(a for a in listed["artifacts"] if a["name"] == "kohya_lora.safetensors")
    assert httpx.get(lora["url"]).content == (tmp_path / "kohya_lora.safetensors").read_bytes()

    # The LoRA loads into a diffusers pipeline of the same base model and changes its output;
    # the kohya-format file gives the same output as the diffusers one.
    from diffusers import StableDiffusionPipeline

    from myspinbot.models.loading import resolve_base_model

    model = resolve_base_model(None, platform.data_dir / "models")
    pipe = StableDiffusionPipeline.from_pretrained(model.path_or_id)
    pipe.set_progress_bar_config(disable=True)
    base = render(pipe)
    pipe.load_lora_weights(str(tmp_path), weight_name="pytorch_lora_weights.safetensors")
    with_lora = render(pipe)
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(tmp_path), weight_name="kohya_lora.safetensors")
    with_kohya = render(pipe)
    assert np.abs(with_lora - base).max() > 1e-3
    assert np.abs(with_kohya - with_lora).max() < 1e-4


def test_killed_training_resumes_from_its_checkpoint(platform: RunningPlatform) -> None:
    job_id = submit(platform, {**TRAIN, "steps": 150, "checkpointEvery": 20})
    killed: list[int] = []

    def kill_after_checkpoints(msg: dict[str, Any]) -> None:
        step = (msg.get("metrics") or {}).get("step", 0)
        if not killed and step >= 50:
            victim = platform.children("train")[0]["pid"]
            os.kill(victim, signal.SIGKILL)
            killed.append(step)

    msgs = follow(platform, job_id, on_message=kill_after_checkpoints)
    assert killed, "training finished before it could be killed"
    assert msgs[-1]["state"] == "completed", msgs[-1]
    resumed = [m for m in msgs if "Resuming from the checkpoint" in (m.get("message") or "")]
    assert resumed, "no resume event"
    resume_step = int(resumed[0]["message"].split("step ")[1].split("/")[0])
    assert 20 <= resume_step <= killed[0]
    after = [m["metrics"]["step"] for m in msgs[msgs.index(resumed[0]) :] if m.get("metrics")]
    assert after and after[0] > resume_step and after[0] < resume_step + 20  # not from step 1
    progress = [m["progress"] for m in msgs]
    assert progress == sorted(progress), "progress went backwards across the resume"


def test_cancel_leaves_no_profile_and_no_checkpoints(platform: RunningPlatform) -> None:
    job_id = submit(platform, {**TRAIN, "steps": 400, "checkpointEvery": 10})

    def cancel_once_checkpointed(msg: dict[str, Any]) -> None:
        step = (msg.get("metrics") or {}).get("step", 0)
        if step >= 25 and not getattr(cancel_once_checkpointed, "done", False):
            cancel_once_checkpointed.done = True  # type: ignore[attr-defined]
            assert platform.post(f"/api/jobs/{job_id}/cancel").status_code == 202

    msgs = follow(platform, job_id, on_message=cancel_once_checkpointed)
    assert msgs[-1]["state"] == "cancelled"
    assert platform.get(f"/api/profiles/{job_id}").status_code == 404
    wait_for(
        lambda: not store(platform).list_keys(f"jobs/{job_id}/checkpoints/"),
        timeout=10,
        what="checkpoints to be deleted",
    )


def test_photos_without_a_face_fail_the_job_readably(platform: RunningPlatform) -> None:
    photos = [non_face_photo(), ("coffee2.jpg", non_face_photo()[1])]
    job_id = submit(platform, {**TRAIN, "steps": 5}, photos=photos)
    final = platform.wait_state(job_id, {"completed", "failed"}, timeout=120)
    assert final["state"] == "failed"
    for w in ("coffee.jpg", "no face"):
        assert w in final["error"], final["error"]
    assert platform.status(job_id)["attempt"] == 1  # not retried: retrying cannot help


def test_a_too_short_voice_clip_is_refused_before_a_job_exists(platform: RunningPlatform) -> None:
    files: list[Any] = [("images", (n, d)) for n, d in face_photos(2)]
    files.append(("voice", ("voice.wav", voice_clip(seconds=1.0), "audio/wav")))
    resp = platform.post("/api/train", files=files, data={"name": "Short", "voice_text": "Hi"})
    assert resp.status_code == 422, resp.text
    assert "voice.wav" in resp.json()["error"] and "at least 3" in resp.json()["error"]
