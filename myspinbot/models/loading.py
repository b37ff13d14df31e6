"""Which base model to train on, and loading its parts the way a real SD 1.5 loads.

`resolve_base_model` turns what the operator configured into a local diffusers directory:
a built-in preset (built once into the cache), a local directory, or a hub id (downloaded
into the standard Hugging Face cache, so an existing download is reused).
`load_components` then loads each part with `from_pretrained(path, subfolder=...)`,
the same calls the diffusers training scripts make.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from myspinbot.errors import PermanentError
from myspinbot.models import presets
from myspinbot.models.hf import hf

HASH_CACHE_FILE = ".myspinbot-model-hash.json"
_HASHED_SUFFIXES = {".json", ".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".txt", ".model"}
_HASH_FORMAT = 1


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    """What was asked for: a preset name, a directory or a hub id."""
    path_or_id: str
    """What `from_pretrained` gets: always a local directory once resolved."""
    preset: str | None
    native_resolution: int
    model_hash: str
    """sha256 over the model's configs and weight files."""
    is_placeholder: bool
    """Random weights (a preset): it renders noise, not people."""


@dataclass
class Components:
    """The parts of an SD 1.5 pipeline a LoRA trainer needs (diffusers/transformers models)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any


def resolve_base_model(spec: str | None, cache_dir: Path) -> ResolvedModel:
    """Resolve `spec` (None means the `tiny` preset) to a local model directory.

    Raises PermanentError when the model cannot be had: a missing directory, a directory
    that is not a diffusers SD pipeline, or a hub id that cannot be downloaded.
    """
    spec = spec or "tiny"
    if spec in presets.PRESETS:
        path = ensure_preset(spec, cache_dir)
        return _resolved(spec, path, preset=spec, hash_cache=path / HASH_CACHE_FILE)

    local = Path(spec).expanduser()
    if local.is_dir():
        _check_pipeline_dir(spec, local)
        return _resolved(spec, local, preset=None, hash_cache=_hash_cache_for(local, cache_dir))
    if _looks_like_path(spec):
        raise PermanentError(f"Base model directory {spec!r} does not exist.")

    snapshot = _download(spec)
    _check_pipeline_dir(spec, snapshot)
    # Never write into the Hugging Face cache: the hash record lives in ours.
    return _resolved(
        spec, snapshot, preset=None, hash_cache=_external_hash_cache(snapshot, cache_dir)
    )


def ensure_preset(name: str, cache_dir: Path) -> Path:
    """The preset's directory under `cache_dir/presets`, built on first use.

    Safe when several processes ask at once: a file lock lets one build while the others
    wait for it, and the build is renamed into place when complete (atomic), so a build
    killed halfway never looks like a preset.
    """
    final = cache_dir / "presets" / name
    if _is_current_preset(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with (final.parent / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current_preset(final):
            return final  # built by whoever held the lock before us
        for leftover in final.parent.glob(f".{name}.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # from a killed build
        tmp = final.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            presets.build_preset(name, tmp, seed=0)
            # Hashed before publishing, so a published preset never needs hashing again.
            model_hash(tmp, tmp / HASH_CACHE_FILE)
            _publish(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _publish(tmp: Path, final: Path) -> None:
    for _ in range(3):
        try:
            tmp.rename(final)
            return
        except OSError:
            # `final` exists: another build won (one not sharing our lock: a copied cache,
            # another machine on a shared disk) or it is of an outdated recipe.
            if _is_current_preset(final):
                return
            stale = final.with_name(f".{final.name}.stale-{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(FileNotFoundError):
                final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"could not publish the preset build at {final}")


def _is_current_preset(path: Path) -> bool:
    info = presets.read_preset_info(path)
    return info is not None and info.get("recipe_version") == presets.RECIPE_VERSION


def _looks_like_path(spec: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else is meant as a filesystem path.
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def _download(repo_id: str) -> Path:
    try:
        # The same download from_pretrained does, without loading: only the pipeline's parts.
        return Path(hf("diffusers").StableDiffusionPipeline.download(repo_id))
    except Exception as exc:
        raise PermanentError(
            f"Base model {repo_id!r} is neither a built-in preset (tiny, sd15-arch), a local "
            f"directory, nor a model that could be downloaded from the Hugging Face hub "
            f"(offline, or no such model): {exc}"
        ) from exc


def _check_pipeline_dir(spec: str, path: Path) -> None:
    index = path / "model_index.json"
    if not index.is_file():
        raise PermanentError(
            f"Base model {spec!r} is not a diffusers Stable Diffusion directory "
            f"(no model_index.json in {path})."
        )
    missing = [
        sub
        for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
        if not (path / sub).is_dir()
    ]
    if missing:
        raise PermanentError(f"Base model {spec!r} lacks {', '.join(missing)} (in {path}).")


def _resolved(spec: str, path: Path, *, preset: str | None, hash_cache: Path) -> ResolvedModel:
    return ResolvedModel(
        spec=spec,
        path_or_id=str(path),
        preset=preset,
        native_resolution=native_resolution(path),
        model_hash=model_hash(path, hash_cache),
        # A copied preset directory is still random weights.
        is_placeholder=preset is not None or presets.read_preset_info(path) is not None,
    )


def native_resolution(path: Path) -> int:
    """The image size the model was built for: UNet sample size times the VAE's downscale."""
    unet = json.loads((path / "unet" / "config.json").read_text())
    vae = json.loads((path / "vae" / "config.json").read_text())
    return int(unet["sample_size"]) * int(2 ** (len(vae["block_out_channels"]) - 1))


# --- Model hash -------------------------------------------------------------------------


def model_hash(path: Path, cache_file: Path) -> str:
    """sha256 over the configs and weights of the pipeline's parts, cached in `cache_file`.

    The cache is trusted only while every hashed file keeps its size and mtime, so an
    edited model is rehashed. Multi-GB weights take seconds to hash; this runs once.
    """
    files = _hashed_files(path)
    signature = {rel: [f.stat().st_size, f.stat().st_mtime_ns] for rel, f in files.items()}
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("format") == _HASH_FORMAT and cached.get("files") == signature:
            return str(cached["sha256"])
    except (OSError, ValueError, AttributeError):
        pass

    digest = hashlib.sha256()
    for rel, file in files.items():
        digest.update(f"{rel}\0{_file_sha256(file)}\n".encode())
    value = digest.hexdigest()
    record = {"format": _HASH_FORMAT, "sha256": value, "files": signature}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only model directory: hash again next time
    return value


def _hashed_files(path: Path) -> dict[str, Path]:
    """model_index.json and the files of the parts it lists, keyed by relative path."""
    index = json.loads((path / "model_index.json").read_text())
    parts = sorted(
        name
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and value[0] is not None
    )
    files = {"model_index.json": path / "model_index.json"}
    for part in parts:
        for file in sorted((path / part).rglob("*")):
            if file.is_file() and file.suffix in _HASHED_SUFFIXES:
                files[file.relative_to(path).as_posix()] = file
    return files


def _file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_cache_for(path: Path, cache_dir: Path) -> Path:
    inside = path / HASH_CACHE_FILE
    return inside if os.access(path, os.W_OK) else _external_hash_cache(path, cache_dir)


def _external_hash_cache(path: Path, cache_dir: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return cache_dir / "model-hashes" / f"{key}.json"


# --- Loading ------------------------------------------------------------------------------


def default_dtype(device: str | torch.device) -> torch.dtype:
    """Weights' dtype for training on `device`: bf16 on CUDA (fp16 without bf16), else fp32."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_components(
    resolved: ResolvedModel, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> Components:
    """Load the frozen parts onto `device` in `dtype` (default: `default_dtype(device)`)."""
    diffusers, transformers = hf("diffusers"), hf("transformers")
    dtype = dtype or default_dtype(device)
    path = resolved.path_or_id
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(
            path, subfolder="unet", torch_dtype=dtype
        )
        vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
        text_encoder = transformers.CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", dtype=dtype
        )
        tokenizer = transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        noise_scheduler = diffusers.DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError, KeyError) as exc:
        raise PermanentError(f"Could not load base model {resolved.spec!r}: {exc}") from exc

    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)
        model.eval()
        model.to(device)
    return Components(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=noise_scheduler,
    )
