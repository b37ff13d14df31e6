"""`myspinbot export`: ONNX graphs that match PyTorch and load in the real tritonserver."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
from click.testing import CliRunner

from myspinbot.cli.main import cli
from myspinbot.imaging.export import EXPORT_TOLERANCE, export_repository
from myspinbot.imaging.txt2img import (
    BaseModelConfig,
    TritonTxt2Img,
    Txt2ImgOptions,
    diffusers_pipeline,
    render_reference,
)
from myspinbot.triton.client import TritonClient
from myspinbot.triton.lora import LoraModels
from myspinbot.triton.repository import (
    ADMIN_KEY_HEADER,
    EXPORT_INFO_FILE,
    MODELS,
    read_export_info,
)
from myspinbot.triton.server import EmbeddedTriton
from tests.triton_support import Exported

PROMPT = "a photo of sks person"
# Pixel difference (pixels in [0, 1]) of an fp16 graph's image from fp32's: measured
# mean 2e-4 / 5e-4 and max 2e-3 / 6e-3 (base / LoRA); the LoRA itself moves pixels ~0.1.
FP16_MEAN_TOLERANCE = 0.005
FP16_MAX_TOLERANCE = 0.05


def test_export_command_writes_a_repository_tritonserver_loads(
    tmp_path: Path, exported: Exported, monkeypatch: object
) -> None:
    """Acceptance 1: `myspinbot export --preset tiny`, then every model READY."""
    repo = tmp_path / "repo"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["export", "--preset", "tiny", "--output", str(repo)],
        env={"MYSPINBOT_DATA_DIR": str(exported.models_dir.parent / "cli-data")},
    )
    assert result.exit_code == 0, result.output
    assert "unet" in result.output and "Exported tiny (fp32)" in result.output
    for model in MODELS:
        assert (repo / model / "config.pbtxt").exists()
        assert (repo / model / "1" / "model.onnx").stat().st_size > 10_000
    info = json.loads((repo / EXPORT_INFO_FILE).read_text())
    assert info["dtype"] == "fp32" and info["lora_targets"] > 0

    with EmbeddedTriton(repo, tmp_path / "triton") as server:
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        admin = {ADMIN_KEY_HEADER: server.admin_key}  # the index is a restricted API
        index = httpx.post(server.url + "/v2/repository/index", json={}, headers=admin).json()
        assert {m["name"]: m["state"] for m in index} == dict.fromkeys(MODELS, "READY")
        for model in MODELS:
            config = httpx.get(f"{server.url}/v2/models/{model}/config").json()
            assert config["max_batch_size"] >= 4 and "dynamic_batching" in config
            # KIND_AUTO resolved to the CPU on this GPU-less machine.
            assert [g["kind"] for g in config["instance_group"]] == ["KIND_CPU"]


def test_onnx_matches_pytorch_within_the_documented_tolerance(exported: Exported) -> None:
    diffs = exported.result.max_abs_diff
    assert set(diffs) == set(MODELS)
    assert all(d <= EXPORT_TOLERANCE["fp32"] for d in diffs.values()), diffs
    info = read_export_info(exported.repository)
    assert info is not None and info.model_hash == exported.base.model_hash


def test_unet_weights_keep_their_module_names(exported: Exported) -> None:
    """The LoRA design relies on it: adapted weights are found by name."""
    graph = onnx.load(str(exported.repository / "unet" / "1" / "model.onnx")).graph
    names = {t.name for t in graph.initializer}
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight" in names


def test_fp16_export_is_checked_and_served_with_a_lora(
    tmp_path: Path, exported: Exported, loras: tuple[Path, Path]
) -> None:
    """The GPU export's weight type (fp16), made and served here on the CPU: the graphs
    pass their check, Triton casts at the boundary, and a profile's LoRA fuses into fp16
    weights. Images come within fp16's precision of the fp32 pipeline."""
    repo = tmp_path / "repo"
    result = export_repository(
        "tiny", repo, models_dir=exported.models_dir, device="cpu", dtype="fp16"
    )
    assert result.dtype == "fp16" and read_export_info(repo) is not None
    assert all(d <= EXPORT_TOLERANCE["fp16"] for d in result.max_abs_diff.values())
    graph = onnx.load(str(repo / "unet" / "1" / "model.onnx")).graph
    weight = next(t for t in graph.initializer if t.name.endswith("attn1.to_q.weight"))
    assert weight.data_type == onnx.TensorProto.FLOAT16

    options = Txt2ImgOptions(steps=6, seed=3)
    base_path = exported.base.path_or_id
    lora = loras[0]
    with EmbeddedTriton(repo, tmp_path / "triton") as server:
        client = TritonClient(server.url, admin_key=server.admin_key)
        try:
            model = LoraModels(client, None, max_loaded=2).ensure(
                "fp16-profile", lambda: (lora / "pytorch_lora_weights.safetensors").read_bytes()
            )
            pipe = TritonTxt2Img(BaseModelConfig(base_path), client)
            ours = {
                "base": pipe(PROMPT, options),
                "lora": pipe(PROMPT, options, unet_model=model.name),
            }
        finally:
            client.close()
    expected = {
        "base": render_reference(diffusers_pipeline(base_path), PROMPT, options),
        "lora": render_reference(diffusers_pipeline(base_path, lora_dir=lora), PROMPT, options),
    }
    for name in ours:
        diff = np.abs(ours[name] - expected[name])
        assert diff.mean() <= FP16_MEAN_TOLERANCE and diff.max() <= FP16_MAX_TOLERANCE, name
    assert np.abs(ours["lora"] - ours["base"]).mean() > 5 * FP16_MEAN_TOLERANCE
