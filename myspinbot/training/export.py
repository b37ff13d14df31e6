"""Writing a trained LoRA in the two formats people load.

- `pytorch_lora_weights.safetensors`: diffusers/peft keys, written by diffusers' own
  `save_lora_weights` with the adapter config (rank, alpha, targets) in its header, so
  `StableDiffusionPipeline.load_lora_weights` rebuilds exactly the trained adapter.
- `kohya_lora.safetensors`: kohya-ss keys (`lora_unet_<module>.lora_down.weight`,
  `.lora_up.weight`, `.alpha`), the format ComfyUI and AUTOMATIC1111 load; diffusers'
  `load_lora_weights` accepts it too.

Both files carry the training record (`metadata`) as JSON under the header key `myspinbot`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from myspinbot.models.hf import hf
from myspinbot.models.loading import ResolvedModel
from myspinbot.training.lora import TrainResult

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
KOHYA_FILE = "kohya_lora.safetensors"
METADATA_KEY = "myspinbot"


def metadata(
    *,
    base_model: str,
    base_model_hash: str,
    rank: int,
    alpha: float,
    steps: int,
    trigger_token: str,
    loss_curve: Sequence[float],
    image_count: int,
    resolution: int,
    seconds: float,
    device: str,
    **extra: Any,
) -> dict[str, Any]:
    """The training record stored with a LoRA (JSON-ready, camelCase like the API)."""
    return {
        "format": "myspinbot-lora/1",
        "baseModel": base_model,
        "baseModelHash": base_model_hash,
        "rank": rank,
        "alpha": alpha,
        "steps": steps,
        "triggerToken": trigger_token,
        "lossCurve": [float(v) for v in loss_curve],
        "imageCount": image_count,
        "resolution": resolution,
        "seconds": round(seconds, 3),
        "device": device,
        **extra,
    }


def result_metadata(
    result: TrainResult,
    base: ResolvedModel,
    *,
    trigger_token: str,
    image_count: int,
    loss_curve: Sequence[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """`metadata` for a finished run on `base` (the loss curve: the result's, or one given)."""
    return metadata(
        base_model=base.spec,
        base_model_hash=base.model_hash,
        rank=result.rank,
        alpha=result.alpha,
        steps=result.steps,
        trigger_token=trigger_token,
        loss_curve=result.loss_curve if loss_curve is None else loss_curve,
        image_count=image_count,
        resolution=result.resolution,
        seconds=result.seconds,
        device=result.device,
        **extra,
    )


def save_diffusers_lora(
    result: TrainResult, out_dir: Path, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write `out_dir/pytorch_lora_weights.safetensors`; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hf("diffusers").StableDiffusionPipeline.save_lora_weights(
        save_directory=str(out_dir),
        unet_lora_layers=result.adapter_state,
        weight_name=DIFFUSERS_FILE,
        safe_serialization=True,
        unet_lora_adapter_metadata=peft_adapter_config(result),
    )
    path = out_dir / DIFFUSERS_FILE
    if meta is not None:
        _add_header(path, {METADATA_KEY: json.dumps(dict(meta))})
    return path


def save_kohya_lora(
    result: TrainResult, out_dir: Path, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write `out_dir/kohya_lora.safetensors`; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = {
        "format": "pt",
        # The kohya-ss training fields that UIs show in their LoRA info panels.
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(result.rank),
        "ss_network_alpha": str(result.alpha),
        "ss_base_model_version": "sd_v1",
        "ss_resolution": f"({result.resolution}, {result.resolution})",
        "ss_max_train_steps": str(result.steps),
        "ss_seed": str(result.seed),
    }
    if meta is not None:
        header[METADATA_KEY] = json.dumps(dict(meta))
    path = out_dir / KOHYA_FILE
    save_file(to_kohya(result.adapter_state, result.alpha), str(path), metadata=header)
    return path


def to_kohya(adapter_state: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Diffusers LoRA keys to kohya-ss keys, one `.alpha` per adapted module."""
    kohya: dict[str, torch.Tensor] = {}
    for key, tensor in adapter_state.items():
        module, sep, kind = key.rpartition(".lora.")
        if not sep or kind not in ("down.weight", "up.weight"):
            raise ValueError(f"not a diffusers LoRA key: {key!r}")
        name = "lora_unet_" + module.removeprefix("unet.").replace(".", "_")
        kohya[f"{name}.lora_{kind}"] = tensor.contiguous()
        kohya[f"{name}.alpha"] = torch.tensor(float(alpha))
    return kohya


def peft_adapter_config(result: TrainResult) -> dict[str, Any]:
    """The peft LoraConfig of the trained adapter, as diffusers stores it in the header."""
    config: dict[str, Any] = (
        hf("peft")
        .LoraConfig(
            r=result.rank,
            lora_alpha=result.alpha,
            init_lora_weights="gaussian",
            target_modules=list(result.target_modules),
        )
        .to_dict()
    )
    return config


def _add_header(path: Path, extra: Mapping[str, str]) -> None:
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    save_file(tensors, str(path), metadata={**header, **extra})
