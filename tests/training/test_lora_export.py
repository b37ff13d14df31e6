"""The exported LoRA files load into a diffusers pipeline and reproduce the trained adapter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open

from myspinbot.models.loading import ResolvedModel, load_components, resolve_base_model
from myspinbot.training.export import (
    DIFFUSERS_FILE,
    KOHYA_FILE,
    result_metadata,
    save_diffusers_lora,
    save_kohya_lora,
)
from myspinbot.training.lora import LoraConfig, LoraTrainer, TrainResult
from tests.models.support import CAPTION, one_thread, shape_images


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@dataclass
class Trained:
    model: ResolvedModel
    trainer: LoraTrainer
    result: TrainResult
    meta: dict[str, object]
    diffusers_file: Path
    kohya_file: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    model = resolve_base_model("tiny", tmp_path_factory.mktemp("cache"))
    # alpha != rank, so a loader that ignored alpha would give a different output.
    trainer = LoraTrainer(
        load_components(model, "cpu"),
        LoraConfig(rank=4, alpha=8, steps=40, learning_rate=1e-2, seed=0),
        "cpu",
    )
    images = shape_images(4)
    trainer.prepare(images, [CAPTION] * 4)
    result = trainer.train(lambda _: None)
    meta = result_metadata(result, model, trigger_token="sks", image_count=len(images))
    out = tmp_path_factory.mktemp("lora")
    return Trained(
        model,
        trainer,
        result,
        meta,
        save_diffusers_lora(result, out, meta),
        save_kohya_lora(result, out, meta),
    )


def pipeline(model: ResolvedModel) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(model.path_or_id)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe: StableDiffusionPipeline) -> np.ndarray:
    out = pipe(
        CAPTION, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np"
    )
    return np.asarray(out.images[0])


def test_files_are_written_under_their_conventional_names(trained: Trained) -> None:
    assert trained.diffusers_file.name == DIFFUSERS_FILE == "pytorch_lora_weights.safetensors"
    assert trained.kohya_file.name == KOHYA_FILE
    assert trained.diffusers_file.parent == trained.kohya_file.parent


def test_diffusers_lora_loads_and_changes_the_output(trained: Trained) -> None:
    pipe = pipeline(trained.model)
    base = render(pipe)
    pipe.load_lora_weights(str(trained.diffusers_file.parent))
    with_lora = render(pipe)
    assert np.abs(with_lora - base).max() > 1e-2
    pipe.unload_lora_weights()
    np.testing.assert_array_equal(render(pipe), base)


def test_kohya_file_loads_and_renders_the_same_as_the_diffusers_file(trained: Trained) -> None:
    pipe = pipeline(trained.model)
    pipe.load_lora_weights(str(trained.diffusers_file))
    from_diffusers = render(pipe)
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(trained.kohya_file))
    from_kohya = render(pipe)
    assert np.abs(from_kohya - from_diffusers).max() <= 1e-5


@pytest.mark.parametrize("which", ["diffusers", "kohya"])
def test_loaded_lora_is_the_trained_adapter(trained: Trained, which: str) -> None:
    pipe = pipeline(trained.model)
    path = trained.diffusers_file if which == "diffusers" else trained.kohya_file
    pipe.load_lora_weights(str(path))
    config = next(iter(pipe.unet.peft_config.values()))
    assert (config.r, config.lora_alpha) == (4, 8)

    rng = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 16, 16, generator=rng)
    context = torch.randn(1, 77, 32, generator=rng)
    with torch.no_grad():
        loaded = pipe.unet(latents, 500, encoder_hidden_states=context).sample
        trained_out = trained.trainer.unet(latents, 500, encoder_hidden_states=context).sample
    torch.testing.assert_close(loaded, trained_out, rtol=1e-5, atol=1e-5)


def test_kohya_keys_and_header(trained: Trained) -> None:
    with safe_open(str(trained.kohya_file), framework="pt") as f:
        keys = list(f.keys())
        header = f.metadata()
        alphas = {f.get_tensor(k).item() for k in keys if k.endswith(".alpha")}
    modules = {k.split(".")[0] for k in keys}
    assert all(m.startswith("lora_unet_") and "." not in m for m in modules)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0" in modules
    assert len(keys) == 3 * len(modules)  # lora_down, lora_up and alpha for each
    assert alphas == {8.0}
    assert header["ss_network_dim"] == "4" and header["ss_network_alpha"] == "8.0"
    assert json.loads(header["myspinbot"]) == trained.meta


def test_diffusers_header_keeps_the_adapter_config_and_our_metadata(trained: Trained) -> None:
    with safe_open(str(trained.diffusers_file), framework="pt") as f:
        header = f.metadata()
        keys = list(f.keys())
    assert all(k.startswith("unet.") for k in keys)
    adapter = json.loads(header["lora_adapter_metadata"])
    assert (adapter["unet.r"], adapter["unet.lora_alpha"]) == (4, 8)
    assert json.loads(header["myspinbot"]) == trained.meta


def test_metadata_records_the_training(trained: Trained) -> None:
    meta = trained.meta
    assert meta["baseModel"] == "tiny" and meta["baseModelHash"] == trained.model.model_hash
    assert (meta["rank"], meta["alpha"], meta["steps"]) == (4, 8.0, 40)
    assert meta["triggerToken"] == "sks" and meta["imageCount"] == 4
    assert meta["resolution"] == 64 and meta["device"] == "cpu"
    assert meta["lossCurve"] == trained.result.loss_curve
    json.dumps(meta)  # JSON-ready
