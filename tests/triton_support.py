"""Session fixtures for tests that need Triton: the `tiny` preset exported once into a
temporary model repository, a real tritonserver on it, and trained tiny LoRAs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from myspinbot.imaging.export import ExportResult, export_repository
from myspinbot.models.loading import ResolvedModel, load_components, resolve_base_model
from myspinbot.training.export import result_metadata, save_diffusers_lora
from myspinbot.training.lora import LoraConfig, LoraTrainer
from myspinbot.triton.server import EmbeddedTriton
from tests.models.support import CAPTION, one_thread, shape_images


@dataclass(frozen=True)
class Exported:
    repository: Path
    models_dir: Path
    result: ExportResult

    @property
    def base(self) -> ResolvedModel:
        return self.result.base


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """`tiny` exported the way `myspinbot export --preset tiny` does."""
    models_dir = tmp_path_factory.mktemp("models")
    repository = tmp_path_factory.mktemp("triton-models")
    result = export_repository("tiny", repository, models_dir=models_dir, device="cpu")
    return Exported(repository, models_dir, result)


@pytest.fixture(scope="session")
def triton(
    exported: Exported, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedTriton]:
    """The real tritonserver (from the nvidia-pytriton wheel) serving the export."""
    with EmbeddedTriton(exported.repository, tmp_path_factory.mktemp("triton")) as server:
        yield server


def train_lora(base: ResolvedModel, out: Path, *, seed: int, shapes: int) -> Path:
    """A real LoRA trained on coloured shapes (alpha != rank, so a loader that ignored
    alpha would render differently); returns its diffusers-format directory."""
    with one_thread():
        trainer = LoraTrainer(
            load_components(base, "cpu"),
            LoraConfig(rank=4, alpha=8, steps=30, learning_rate=5e-3, seed=seed),
            "cpu",
        )
        images = shape_images(shapes)
        trainer.prepare(images, [CAPTION] * len(images))
        result = trainer.train(lambda _: None)
    meta = result_metadata(result, base, trigger_token="sks", image_count=len(images))
    save_diffusers_lora(result, out, meta)
    return out


@pytest.fixture(scope="session")
def loras(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different profiles' LoRAs (diffusers directories) on the exported base."""
    base = resolve_base_model("tiny", exported.models_dir)
    return (
        train_lora(base, tmp_path_factory.mktemp("lora-a"), seed=1, shapes=4),
        train_lora(base, tmp_path_factory.mktemp("lora-b"), seed=2, shapes=3),
    )
