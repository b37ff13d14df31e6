"""Issue 11 acceptance 6: the real tritonserver refuses its model-repository API without
the platform's admin key, and the platform's own LoRA loading (which sends it) works."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from myspinbot.triton.client import TritonClient, TritonError
from myspinbot.triton.lora import LoraModels, lora_model_name
from myspinbot.triton.repository import ADMIN_KEY_HEADER
from myspinbot.triton.server import EmbeddedTriton

IDS = np.zeros((1, 77), dtype=np.int64)


def _load_request(marker: Path) -> dict[str, object]:
    """What an attacker would send: a python-backend model whose code runs on load."""
    code = f"open({str(marker)!r}, 'w').write('ran')\nclass TritonPythonModel:\n    pass\n"
    config = {"name": "evil", "backend": "python", "max_batch_size": 0}
    return {
        "parameters": {
            "config": json.dumps(config),
            "file:1/model.py": base64.b64encode(code.encode()).decode(),
        }
    }


def _index(triton: EmbeddedTriton) -> list[str]:
    resp = httpx.post(
        triton.url + "/v2/repository/index",
        json={},
        headers={ADMIN_KEY_HEADER: triton.admin_key},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return [m["name"] for m in resp.json()]


@pytest.mark.parametrize("key", [None, "not-the-key"], ids=["no-key", "wrong-key"])
def test_a_model_load_without_the_admin_key_is_refused(
    triton: EmbeddedTriton, tmp_path: Path, key: str | None
) -> None:
    marker = tmp_path / "code-ran"
    headers = {ADMIN_KEY_HEADER: key} if key else {}
    resp = httpx.post(
        triton.url + "/v2/repository/models/evil/load",
        json=_load_request(marker),
        headers=headers,
        timeout=60,
    )
    assert resp.status_code == 403, resp.text
    assert "restricted" in resp.json()["error"]
    assert not marker.exists()
    assert "evil" not in _index(triton)
    # Unloading someone's model and listing every profile's model are refused alike.
    assert (
        httpx.post(triton.url + "/v2/repository/models/unet/unload", headers=headers).status_code
        == 403
    )
    assert (
        httpx.post(triton.url + "/v2/repository/index", json={}, headers=headers).status_code == 403
    )
    assert "unet" in _index(triton)


def test_inference_and_health_stay_open(triton: EmbeddedTriton) -> None:
    assert httpx.get(triton.url + "/v2/health/live").status_code == 200
    # Readiness is open too; on this session-wide server it may be 400 (not ready) while
    # another test's deliberately broken model sits unavailable, but never 403.
    assert httpx.get(triton.url + "/v2/health/ready").status_code in (200, 400)
    client = TritonClient(triton.url)  # no key
    try:
        out = client.infer("text_encoder", {"input_ids": IDS}, ["last_hidden_state"])
        assert out["last_hidden_state"].shape[0] == 1
    finally:
        client.close()


def test_the_platforms_lora_loading_sends_the_key(
    triton: EmbeddedTriton, loras: tuple[Path, Path]
) -> None:
    lora = (loras[0] / "pytorch_lora_weights.safetensors").read_bytes()
    keyless = TritonClient(triton.url, retry_s=1)
    try:
        with pytest.raises(TritonError, match="MYSPINBOT_TRITON_ADMIN_KEY"):
            LoraModels(keyless, None, max_loaded=2).ensure("no-key-profile", lambda: lora)
        assert not keyless.model_ready(lora_model_name("no-key-profile"))
    finally:
        keyless.close()

    client = TritonClient(triton.url, admin_key=triton.admin_key)
    try:
        model = LoraModels(client, None, max_loaded=2).ensure("keyed-profile", lambda: lora)
        assert model.load_seconds is not None and client.model_ready(model.name)
        client.unload_model(model.name)
        assert not client.model_ready(model.name)
    finally:
        client.close()
