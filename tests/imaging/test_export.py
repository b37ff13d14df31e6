"""`myspinbot export`: ONNX graphs that match PyTorch and load in the real tritonserver."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import onnx
from click.testing import CliRunner

from myspinbot.cli.main import cli
from myspinbot.imaging.export import EXPORT_TOLERANCE
from myspinbot.triton.repository import EXPORT_INFO_FILE, MODELS, read_export_info
from myspinbot.triton.server import EmbeddedTriton
from tests.triton_support import Exported


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
        index = httpx.post(server.url + "/v2/repository/index", json={}).json()
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
