"""The Triton model repository: which models it holds and what the export recorded.

The configs and the model code are committed under `triton-models/`; the ONNX graphs in
it are build outputs of `myspinbot export`, described by `myspinbot_export.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from myspinbot.settings import Settings

TEXT_ENCODER = "text_encoder"
UNET = "unet"
VAE_DECODER = "vae_decoder"
MODELS = (TEXT_ENCODER, UNET, VAE_DECODER)

ONNX_FILE = "model.onnx"
MODEL_CODE = "model.py"
EXPORT_INFO_FILE = "myspinbot_export.json"
# Set in tritonserver's environment: an override-loaded (per-profile) model lives in a
# temporary directory and finds its base model's ONNX file through it.
REPOSITORY_ENV = "MYSPINBOT_TRITON_REPOSITORY"
# Per-profile LoRA UNets are loaded as models named `<prefix><profile id>` (triton/lora.py).
# Here, not in lora.py, so the gateway can tell them apart without importing torch.
LORA_MODEL_PREFIX = "unet-lora-"
# The header that carries Triton's admin key (MYSPINBOT_TRITON_ADMIN_KEY): tritonserver
# refuses its model-repository API (load, unload, index) without it
# (`--http-restricted-api`, triton/server.py). Lower case, as gRPC metadata keys must be.
ADMIN_KEY_HEADER = "x-myspinbot-admin-key"


def admin_headers(admin_key: str | None) -> dict[str, str]:
    """The headers of a model-repository request."""
    return {ADMIN_KEY_HEADER: admin_key} if admin_key else {}


CHECKOUT_REPOSITORY = Path(__file__).resolve().parents[2] / "triton-models"


def lora_model_name(profile_id: str) -> str:
    """The Triton model a profile's LoRA is loaded as (here too, so deleting a profile can
    name its model without importing torch)."""
    return LORA_MODEL_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", profile_id)


def default_repository(settings: Settings) -> Path:
    """The configured repository, else this checkout's `triton-models/`."""
    return (settings.triton_repository or CHECKOUT_REPOSITORY).resolve()


def model_code(repository: Path = CHECKOUT_REPOSITORY) -> Path:
    """The python-backend model file every model of the repository runs."""
    return (repository / UNET / "1" / MODEL_CODE).resolve()


def onnx_path(repository: Path, model: str) -> Path:
    return repository / model / "1" / ONNX_FILE


@dataclass(frozen=True)
class ExportInfo:
    base_model: str
    model_hash: str
    dtype: str
    native_resolution: int
    raw: dict[str, Any]


def read_export_info(repository: Path) -> ExportInfo | None:
    """What `myspinbot export` wrote into `repository`, or None if it holds no export."""
    try:
        raw = json.loads((repository / EXPORT_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not all(onnx_path(repository, m).exists() for m in MODELS):
        return None
    return ExportInfo(
        base_model=str(raw["base_model"]),
        model_hash=str(raw["model_hash"]),
        dtype=str(raw["dtype"]),
        native_resolution=int(raw["native_resolution"]),
        raw=raw,
    )
