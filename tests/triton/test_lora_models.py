"""Per-profile LoRA models: loaded on demand, evicted least recently used, reloaded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from safetensors.numpy import load

from myspinbot.errors import PermanentError
from myspinbot.triton.client import TritonClient
from myspinbot.triton.lora import LoraModel, LoraModels, lora_model_name, to_triton_lora
from myspinbot.triton.server import EmbeddedTriton


def _file(lora: Path) -> bytes:
    return (lora / "pytorch_lora_weights.safetensors").read_bytes()


def test_conversion_folds_alpha_over_rank_into_up(loras: tuple[Path, Path]) -> None:
    data = _file(loras[0])
    original = load(data)
    converted = load(to_triton_lora(data))
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    up = converted[f"{key}.weight::up"]
    assert (up == original[f"{key}.lora.up.weight"] * 2.0).all()  # alpha 8 / rank 4
    assert (converted[f"{key}.weight::down"] == original[f"{key}.lora.down.weight"]).all()


def test_a_file_that_adapts_nothing_is_refused() -> None:
    import numpy as np
    from safetensors.numpy import save

    with pytest.raises(PermanentError, match="adapts no UNet weights"):
        to_triton_lora(save({"x": np.zeros(2, np.float32)}))


def test_least_recently_used_profile_is_unloaded_and_comes_back(
    triton: EmbeddedTriton, loras: tuple[Path, Path], redis_url: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    r.delete("myspinbot:triton:lora-lru")
    client = TritonClient(triton.url, admin_key=triton.admin_key)
    try:
        manager = LoraModels(client, r, max_loaded=1)
        first = manager.ensure("lru-a", lambda: _file(loras[0]))
        assert client.model_ready(first.name)
        again = manager.ensure("lru-a", lambda: pytest.fail("already loaded: no fetch"))
        assert again.load_seconds is None

        second = manager.ensure("lru-b", lambda: _file(loras[1]))
        assert client.model_ready(second.name)
        assert not client.model_ready(first.name)  # over budget: the older one went

        back = manager.ensure("lru-a", lambda: _file(loras[0]))
        assert back.load_seconds is not None and client.model_ready(back.name)
        for name in (lora_model_name("lru-a"), lora_model_name("lru-b")):
            if client.model_ready(name):
                client.unload_model(name)
    finally:
        client.close()


def test_jobs_asking_for_one_profile_at_once_load_it_once(
    triton: EmbeddedTriton, loras: tuple[Path, Path], redis_url: str
) -> None:
    """Two jobs (each with its own manager, as in two replicas) want a profile that is not
    loaded yet: one loads it, the other waits for it and finds it ready."""
    r = redis.Redis.from_url(redis_url)
    fetches: list[str] = []

    def ensure(job: str) -> LoraModel:
        client = TritonClient(triton.url, admin_key=triton.admin_key)
        try:
            manager = LoraModels(client, r, max_loaded=4)
            return manager.ensure("together", lambda: fetches.append(job) or _file(loras[0]))
        finally:
            client.close()

    with ThreadPoolExecutor(2) as pool:
        models = list(pool.map(ensure, ["job-1", "job-2"]))
    assert len(fetches) == 1, fetches
    assert sorted(m.load_seconds is None for m in models) == [False, True]
    client = TritonClient(triton.url, admin_key=triton.admin_key)
    try:
        client.unload_model(lora_model_name("together"))
    finally:
        client.close()
