"""A profile's LoRA as a Triton model of its own, loaded without restarting anything.

Triton knows nothing of LoRA for diffusion models, so each profile gets a model named
`unet-lora-<profile>`: the repository's UNet code and config, plus the profile's LoRA
file, sent through Triton's model-control API (`load` with override files). The model
runs the base UNet's ONNX graph with the adapted weights fused in (see
triton-models/unet/1/model.py), so two profiles never share weights and can run at once.

Each loaded profile holds a UNet in memory; beyond `max_loaded` the least recently used
one is unloaded. A model that vanished (Triton restarted, or another replica evicted it)
is simply loaded again on its next use.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from myspinbot import keys
from myspinbot.errors import PermanentError
from myspinbot.training.export import METADATA_KEY
from myspinbot.triton import repository as repo
from myspinbot.triton.client import TritonClient
from myspinbot.triton.repository import lora_model_name

LORA_FILE = "lora.safetensors"
MODEL_PREFIX = repo.LORA_MODEL_PREFIX
# Longest a load may hold its lock (an SD 1.5 LoRA fuses ~3.4 GB of weights); a waiter
# gives up after as long.
LOAD_LOCK_S = 600
_LOCAL_LOAD_LOCK = threading.Lock()
# (down, up) key suffixes: diffusers' own format, and PEFT's.
_KEY_STYLES = ((".lora.down.weight", ".lora.up.weight"), (".lora_A.weight", ".lora_B.weight"))


def to_triton_lora(diffusers_lora: bytes, prefix: str = "unet.") -> bytes:
    """A diffusers LoRA file -> the model's format: per adapted ONNX initializer,
    `<name>::down` and `<name>::up`, with the LoRA scale (alpha / rank) folded into up."""
    tensors = load_safetensors(diffusers_lora)
    meta = _myspinbot_metadata(diffusers_lora)
    out: dict[str, NDArray[Any]] = {}
    for key, down in tensors.items():
        style = next((st for st in _KEY_STYLES if key.endswith(st[0])), None)
        if style is None:
            continue
        module = key[: -len(style[0])]
        up = tensors.get(module + style[1])
        if up is None:
            raise PermanentError(f"The LoRA file is incomplete: {module} has no up weight.")
        rank = down.shape[0]
        scale = float(meta.get("alpha", rank)) / rank
        name = module.removeprefix("unet.")
        out[f"{prefix}{name}.weight::down"] = down.astype(np.float32)
        out[f"{prefix}{name}.weight::up"] = (up.astype(np.float32) * scale).astype(np.float32)
    if not out:
        raise PermanentError("The LoRA file adapts no UNet weights.")
    return save_safetensors(out)


def _myspinbot_metadata(data: bytes) -> dict[str, Any]:
    """Our training record in the safetensors header (rank, alpha, ...), or {}."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    try:
        meta = json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "{}"))
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True)
class LoraModel:
    name: str
    load_seconds: float | None
    """How long bringing it online took now; None when it was already loaded."""


class LoraModels:
    """Loads, tracks and evicts per-profile LoRA models in one Triton."""

    def __init__(
        self,
        triton: TritonClient,
        r: redis.Redis | None,
        *,
        max_loaded: int,
        model_code: Path | None = None,
    ) -> None:
        self.triton = triton
        self.r = r
        self.max_loaded = max_loaded
        self.model_code = model_code or repo.model_code()

    def ensure(self, profile_id: str, fetch_lora: Callable[[], bytes]) -> LoraModel:
        """The profile's model, loading it from `fetch_lora()` (its diffusers LoRA file)
        when Triton does not have it ready."""
        name = lora_model_name(profile_id)
        loaded: float | None = None
        if not self.triton.model_ready(name):
            with self._loading(name):
                # Another job may have loaded it while this one waited for the lock.
                if not self.triton.model_ready(name):
                    started = time.monotonic()
                    self._load(name, fetch_lora())
                    loaded = time.monotonic() - started
        self._touch(name)
        return LoraModel(name, loaded)

    def _loading(self, name: str) -> Any:
        """One load of a model at a time: across replicas through Redis, else in-process."""
        if self.r is None:
            return _LOCAL_LOAD_LOCK
        return self.r.lock(
            keys.triton_lora_load_lock(name), timeout=LOAD_LOCK_S, blocking_timeout=LOAD_LOCK_S
        )

    def _load(self, name: str, lora: bytes) -> None:
        config = self.triton.model_config(repo.UNET)
        config["name"] = name
        params = dict(config.get("parameters") or {})
        params["base_model"] = {"string_value": repo.UNET}
        params["lora_file"] = {"string_value": LORA_FILE}
        config["parameters"] = params
        files = {
            f"file:1/{repo.MODEL_CODE}": self.model_code.read_bytes(),
            f"file:1/{LORA_FILE}": to_triton_lora(lora),
        }
        self.triton.load_model(name, config, files)

    def _touch(self, name: str) -> None:
        if self.r is None:
            return
        self.r.zadd(keys.TRITON_LORA_LRU, {name: time.time()})
        excess = int(self.r.zcard(keys.TRITON_LORA_LRU)) - self.max_loaded
        if excess <= 0:
            return
        for old in self.r.zrange(keys.TRITON_LORA_LRU, 0, excess - 1):
            old_name = old.decode() if isinstance(old, bytes) else str(old)
            if old_name == name:
                continue
            # Remove first: of two replicas evicting at once, one unloads.
            if self.r.zrem(keys.TRITON_LORA_LRU, old_name):
                self.triton.unload_model(old_name)


__all__ = ["LORA_FILE", "LoraModel", "LoraModels", "lora_model_name", "to_triton_lora"]
