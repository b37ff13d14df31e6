"""The train job: photos and a voice clip in, a reusable identity profile out.

    prepare -> voice -> load -> encode -> train -> export

Checkpoints go to S3 every few steps; a redelivered job (its process died)
resumes from the last one instead of starting over. A cancelled job leaves no
profile and no checkpoints behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from myspinbot import keys
from myspinbot.db import ProfileRecord
from myspinbot.errors import JobCancelled, PermanentError
from myspinbot.jobs.deps import PipelineDeps
from myspinbot.jobs.handler import JobRun
from myspinbot.jobs.models import Artifact
from myspinbot.jobs.progress import Step
from myspinbot.settings import Settings
from myspinbot.storage import ArtifactStore
from myspinbot.storage.layout import profile_prefix as profile_prefix

if TYPE_CHECKING:
    from myspinbot.training.dataset import PreparedDataset

STEPS = [
    Step("prepare", 8, title="Preparing photos"),
    Step("voice", 4, after=("prepare",), title="Building the voice profile"),
    Step("load", 4, after=("voice",), title="Loading the base model"),
    Step("encode", 4, after=("load",), title="Caching latents and text embeddings"),
    Step("train", 75, after=("encode",), title="Training the LoRA"),
    Step("export", 5, after=("train",), title="Saving the profile"),
]
DEFAULT_TRIGGER_TOKEN = "sks"
LOSS_CURVE_POINTS = 200
DEVICE_LOCK_TTL_S = 120


class TrainParams(BaseModel):
    """What the gateway put in the job (see gateway/routes.py)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    images: list[str] = Field(min_length=1)
    voice: str | None = None
    voice_text: str | None = Field(None, alias="voiceText")
    options: dict[str, Any] = Field(default_factory=dict)


# One deps type for every pipeline; the name stays for the function handlers.
TrainDeps = PipelineDeps


def checkpoint_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoints/"


def run_training(run: JobRun, deps: TrainDeps) -> dict[str, Any]:
    try:
        return _run(run, deps)
    except JobCancelled:
        deps.store.delete_prefix(checkpoint_prefix(run.job.id))
        raise


def _run(run: JobRun, deps: TrainDeps) -> dict[str, Any]:
    # Heavy imports here: the function's process starts fast and the gateway never pays them.
    from myspinbot.models.loading import load_components, resolve_base_model
    from myspinbot.training.dataset import prepare_dataset
    from myspinbot.training.lora import CheckpointMismatch, LoraConfig, LoraTrainer
    from myspinbot.training.options import TrainOptions

    try:
        params = TrainParams.model_validate(run.params)
        options = TrainOptions.model_validate(params.options)
    except ValidationError as exc:
        # A malformed job cannot succeed on a retry: fail it now, saying what is wrong.
        raise PermanentError(
            f"The training job is malformed: {exc.errors()[0]['msg']} "
            f"({'.'.join(map(str, exc.errors()[0]['loc']))})"
        ) from None
    job_id, store = run.job.id, deps.store
    profile_id = job_id  # one profile per job: a redelivery overwrites, never duplicates
    token = options.trigger_token or DEFAULT_TRIGGER_TOKEN

    run.progress("load", 0.0, "Resolving the base model")
    model = resolve_base_model(deps.settings.base_model, deps.settings.models_dir)
    resolution = options.resolution or model.native_resolution

    run.progress("prepare", 0.0, f"Checking {len(params.images)} photos")
    files = [(key.rsplit("/", 1)[-1], store.get_bytes(key)) for key in params.images]
    dataset = prepare_dataset(files, resolution=resolution, trigger_token=token)
    run.progress("prepare", 1.0, f"{len(dataset.images)} of {len(files)} photos usable")

    voice = _voice(run, store, params, profile_id, deps.settings)

    device = _device(deps.settings)
    with _device_lock(deps.redis, device) as keep_lock:
        run.progress("load", 0.5, f"Loading {model.spec} on {device}")
        components = load_components(model, device=device)
        config = LoraConfig(
            rank=options.rank,
            alpha=options.alpha,
            steps=options.steps,
            learning_rate=options.learning_rate,
            batch_size=options.batch_size,
            seed=options.seed,
            resolution=resolution,
            gradient_checkpointing=options.gradient_checkpointing,
            checkpoint_every=options.checkpoint_every,
        )
        trainer = LoraTrainer(components, config, device)
        run.progress("encode", 0.0, "Caching latents and text embeddings")
        trainer.prepare(
            [img.image for img in dataset.images], [img.caption for img in dataset.images]
        )

        resume = _load_checkpoint(run, store, options.steps)

        def on_step(info: Any) -> None:
            keep_lock()
            run.progress(
                "train",
                info.step / info.total_steps,
                f"Step {info.step}/{info.total_steps} · loss {info.loss:.4f} · "
                f"{info.it_per_s:.1f} it/s",
                eta_seconds=info.eta_s,
                metrics={
                    "step": info.step,
                    "totalSteps": info.total_steps,
                    "loss": round(info.loss, 6),
                    "itPerS": round(info.it_per_s, 3),
                },
            )

        def checkpoint(state: bytes, step: int) -> None:
            store.put_bytes(
                checkpoint_prefix(job_id) + "latest.pt", state, "application/octet-stream"
            )
            store.put_bytes(
                checkpoint_prefix(job_id) + "latest.json",
                json.dumps({"step": step}).encode(),
                "application/json",
            )

        try:
            result = trainer.train(on_step=on_step, checkpoint=checkpoint, resume=resume)
        except CheckpointMismatch as exc:
            # Left by an earlier run with other options or photos: it cannot be continued.
            run.progress("train", 0.0, f"Starting over: the saved checkpoint does not fit ({exc})")
            store.delete_prefix(checkpoint_prefix(job_id))
            result = trainer.train(on_step=on_step, checkpoint=checkpoint)

    run.progress("export", 0.0, "Writing the LoRA files")
    artifacts, metadata = _export(result, model, params, token, dataset, voice, profile_id, store)
    deps.history.save_profile(
        ProfileRecord(
            id=profile_id,
            name=params.name,
            job_id=job_id,
            base_model=model.spec,
            trigger_token=token,
            artifacts=artifacts,
            metadata=metadata,
            owner=run.job.owner,
        )
    )
    store.delete_prefix(checkpoint_prefix(job_id))
    run.progress("export", 1.0, "Profile saved")
    return {
        "profileId": profile_id,
        "name": params.name,
        "triggerToken": token,
        "baseModel": {
            "id": model.spec,
            "hash": model.model_hash,
            "placeholder": model.is_placeholder,
        },
        # Keys, not links: the gateway signs a short-lived link whenever it shows the result.
        "artifacts": artifacts,
        "steps": result.steps,
        "finalLoss": metadata["finalLoss"],
        "lossCurve": metadata["lossCurve"],
        "images": {"used": len(dataset.images), "unusable": dataset.unusable},
        "voice": _voice_summary(voice),
    }


def _voice_summary(voice: dict[str, Any] | None) -> dict[str, Any] | None:
    """The voice as the result shows it: the match's score, not its conversion matrix."""
    if not voice or not voice.get("match"):
        return voice
    match = {k: v for k, v in voice["match"].items() if k not in ("conversion", "clip_embedding")}
    return {**voice, "match": match}


def _device(settings: Settings) -> str:
    import torch

    if settings.device:
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _device_lock(client: redis.Redis, device: str) -> Iterator[Any]:
    """One training per GPU (the original serialized jobs to protect VRAM); CPUs share."""
    if not device.startswith("cuda"):
        yield lambda: None
        return
    lock = client.lock(
        keys.device_lock(socket.gethostname(), device), timeout=DEVICE_LOCK_TTL_S, blocking=True
    )
    lock.acquire()
    last = time.monotonic()

    def keep() -> None:
        nonlocal last
        if time.monotonic() - last > DEVICE_LOCK_TTL_S / 4:
            lock.extend(DEVICE_LOCK_TTL_S, replace_ttl=True)
            last = time.monotonic()

    try:
        yield keep
    finally:
        lock.release()


def _load_checkpoint(run: JobRun, store: ArtifactStore, total: int) -> bytes | None:
    prefix = checkpoint_prefix(run.job.id)
    if not store.exists(prefix + "latest.pt"):
        return None
    step = json.loads(store.get_bytes(prefix + "latest.json"))["step"]
    run.progress("train", step / total, f"Resuming from the checkpoint at step {step}/{total}")
    return store.get_bytes(prefix + "latest.pt")


def _voice(
    run: JobRun, store: ArtifactStore, params: TrainParams, profile_id: str, settings: Settings
) -> dict[str, Any] | None:
    if not params.voice:
        run.progress("voice", 1.0, "No voice clip given")
        return None
    from myspinbot.voice.build import build_matched_voice

    run.progress("voice", 0.0, "Analysing the voice clip")
    built = build_matched_voice(
        store.get_bytes(params.voice),
        params.voice.rsplit("/", 1)[-1],
        params.voice_text,
        settings,
        progress=lambda fraction, message: run.progress("voice", 0.1 + 0.9 * fraction, message),
    )
    prefix = profile_prefix(profile_id) + "voice/"
    store.put_bytes(prefix + "reference.wav", built.wav, "audio/wav")
    summary = built.profile.model_dump(mode="json")
    store.put_bytes(prefix + "profile.json", json.dumps(summary).encode(), "application/json")
    match = built.profile.match
    if match is not None:
        store.put_bytes(prefix + "match.json", match.model_dump_json().encode(), "application/json")
        run.progress(
            "voice",
            1.0,
            f"Voice matched: {match.engine} {match.base_voice}, similarity {match.score:.2f} "
            f"(unconverted {match.base_score:.2f})",
        )
    else:
        run.progress("voice", 1.0, "Voice profile ready")
    return summary


def _export(
    result: Any,
    model: Any,
    params: TrainParams,
    token: str,
    dataset: PreparedDataset,
    voice: dict[str, Any] | None,
    profile_id: str,
    store: ArtifactStore,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from myspinbot.training.export import result_metadata, save_diffusers_lora, save_kohya_lora

    prefix = profile_prefix(profile_id)
    curve = _downsample(result.loss_curve, LOSS_CURVE_POINTS)
    meta = result_metadata(
        result,
        model,
        trigger_token=token,
        image_count=len(dataset.images),
        loss_curve=curve,
        name=params.name,
        finalLoss=curve[-1] if curve else None,
        voice=voice,
        placeholderModel=model.is_placeholder,
        seed=result.seed,
    )
    artifacts: list[Artifact] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in (
            save_diffusers_lora(result, Path(tmp), meta),
            save_kohya_lora(result, Path(tmp), meta),
        ):
            ctype = "application/octet-stream"
            size = store.put_file(prefix + path.name, path, ctype)
            artifacts.append(
                Artifact(name=path.name, key=prefix + path.name, size=size, content_type=ctype)
            )
    meta["photos"], meta["portraitPhoto"] = save_photo_masters(dataset, prefix, store)
    portrait = io.BytesIO()
    dataset.best_portrait().image.save(portrait, "PNG")
    for name, data, ctype in (
        ("metadata.json", json.dumps(meta, indent=2).encode(), "application/json"),
        ("portrait.png", portrait.getvalue(), "image/png"),
    ):
        store.put_bytes(prefix + name, data, ctype)
        artifacts.append(Artifact(name=name, key=prefix + name, size=len(data), content_type=ctype))
    if voice:
        names = ["voice/reference.wav", "voice/profile.json"]
        names += ["voice/match.json"] if voice.get("match") else []
        for name in names:
            artifacts.append(Artifact(name=name, key=prefix + name))
    return [a.stored() for a in artifacts], meta


def save_photo_masters(
    dataset: PreparedDataset, prefix: str, store: ArtifactStore
) -> tuple[list[dict[str, Any]], str]:
    """Store every usable photo's face-centred master beside the LoRA: the video's
    portrait is cut from it at the video size, not from the (tiny) training crop.
    Returns the metadata entries and the name of the photo best used as the portrait."""
    photos = []
    for i, prepared in enumerate(dataset.images):
        master = prepared.master
        png = io.BytesIO()
        master.image.save(png, "PNG")
        data = png.getvalue()
        key = f"{prefix}photos/{i:03d}.png"  # uploads' names may hold anything
        store.put_bytes(key, data, "image/png")
        photos.append(
            {
                "name": prepared.name,
                "key": key,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": master.image.width,
                "sourceSize": master.source_side,
                "face": list(master.face),
            }
        )
    return photos, dataset.best_portrait().name


def _downsample(values: list[float], points: int) -> list[float]:
    if len(values) <= points:
        return [round(v, 6) for v in values]
    stride = len(values) / points
    return [round(values[int(i * stride)], 6) for i in range(points - 1)] + [round(values[-1], 6)]


def unavailable_reason(settings: Settings) -> str | None:
    """What to tell a person about the model in use (None: a real base model)."""
    if settings.base_model in (None, "tiny", "sd15-arch"):
        which = settings.base_model or "tiny"
        return (
            f"No real base model is configured: training uses the built-in `{which}` "
            "model with random weights, which renders noise, not people. Set "
            "MYSPINBOT_BASE_MODEL to a Stable Diffusion 1.5 directory or hub id."
        )
    return None
