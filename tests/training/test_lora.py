"""The LoRA trainer on the tiny preset (CPU): it learns, resumes exactly, and stops at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from myspinbot.errors import JobCancelled, PermanentError
from myspinbot.models.loading import ResolvedModel, load_components, resolve_base_model
from myspinbot.training.lora import (
    CheckpointMismatch,
    LoraConfig,
    LoraConfigError,
    LoraTrainer,
    StepInfo,
)
from tests.models.support import CAPTION, one_thread, shape_images


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ResolvedModel:
    return resolve_base_model("tiny", tmp_path_factory.mktemp("cache"))


def trainer(
    tiny: ResolvedModel, config: LoraConfig, captions: list[str] | None = None
) -> LoraTrainer:
    t = LoraTrainer(load_components(tiny, "cpu"), config, "cpu")
    images = shape_images(4)
    t.prepare(images, captions or [CAPTION] * len(images))
    return t


def zero_prediction_loss(t: LoraTrainer) -> float:
    """The eval loss of a model that always predicts zeros, on the same fixed batch: the
    score a LoRA that learned nothing but to shrink its output towards zero would get."""
    hook = t.unet.register_forward_hook(lambda _m, _i, out: (torch.zeros_like(out[0]),))
    try:
        return t.eval_loss()
    finally:
        hook.remove()


def test_training_lowers_the_loss_on_a_fixed_batch(tiny: ResolvedModel) -> None:
    t = trainer(tiny, LoraConfig(rank=4, steps=150, learning_rate=1e-2, seed=0))
    before = t.eval_loss()
    assert t.eval_loss() == before  # fixed noise and timesteps: the same every call
    zeros = zero_prediction_loss(t)
    infos: list[StepInfo] = []
    result = t.train(infos.append)
    after = t.eval_loss()

    # Learned, measured against both the untrained model and predicting zeros (which
    # alone is ~11 % under the untrained model: no evidence of learning).
    assert after <= 0.8 * before, f"eval loss {before:.4f} -> {after:.4f}"
    assert after <= 0.8 * zeros, f"eval loss {after:.4f}; predicting zeros: {zeros:.4f}"
    # The learning is in the LoRA: with the adapter off, the model is the base again.
    t.unet.disable_adapters()
    try:
        without = t.eval_loss()
    finally:
        t.unet.enable_adapters()
    assert without == pytest.approx(before, rel=1e-4), (before, without, after)
    assert t.eval_loss() == after
    assert [i.step for i in infos] == list(range(1, 151))
    assert {i.total_steps for i in infos} == {150}
    assert all(i.it_per_s > 0 and i.eta_s >= 0 for i in infos)
    assert infos[-1].eta_s == 0
    assert result.steps == 150 and len(result.loss_curve) == 150
    assert result.loss_curve == [i.loss for i in infos]
    assert (result.rank, result.alpha, result.seed, result.resolution) == (4, 4.0, 0, 64)
    assert result.seconds > 0 and result.peak_memory_bytes >= 0 and result.device == "cpu"
    keys = list(result.adapter_state)
    assert keys and all(k.endswith((".lora.down.weight", ".lora.up.weight")) for k in keys)
    assert all(
        v.dtype == torch.float32 and v.device.type == "cpu" for v in result.adapter_state.values()
    )


def test_config_defaults_resolve_like_dreambooth_lora(tiny: ResolvedModel) -> None:
    t = LoraTrainer(load_components(tiny, "cpu"), LoraConfig(steps=1000), "cpu")
    c = t.config
    assert (c.rank, c.alpha, c.learning_rate, c.batch_size) == (16, 16.0, 1e-4, 1)
    assert c.resolution == tiny.native_resolution
    assert c.checkpoint_every == 100
    assert c.seed is not None
    assert LoraConfig(steps=100).resolved(64).checkpoint_every == 50


@pytest.mark.parametrize(
    "kwargs", [{"rank": 0}, {"steps": 0}, {"learning_rate": 0.0}, {"alpha": -1.0}]
)
def test_bad_options_are_permanent_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(LoraConfigError) as caught:
        LoraConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, PermanentError)


def test_resolution_must_fit_the_unet(tiny: ResolvedModel) -> None:
    with pytest.raises(LoraConfigError, match="multiple of 8"):
        LoraTrainer(load_components(tiny, "cpu"), LoraConfig(resolution=60), "cpu")


def test_prepare_wants_one_caption_per_image(tiny: ResolvedModel) -> None:
    t = LoraTrainer(load_components(tiny, "cpu"), LoraConfig(), "cpu")
    with pytest.raises(ValueError, match="one caption per image"):
        t.prepare(shape_images(2), [CAPTION])


def test_gradient_checkpointing_computes_the_same_steps(tiny: ResolvedModel) -> None:
    curves = []
    for checkpointing in (False, True):
        config = LoraConfig(
            rank=4, steps=4, learning_rate=1e-2, seed=1, gradient_checkpointing=checkpointing
        )
        curves.append(trainer(tiny, config).train(lambda _: None).loss_curve)
    assert curves[0] == pytest.approx(curves[1], rel=1e-5)
    assert curves[0][0] != curves[0][-1]  # the LoRA did get gradients both ways


def test_resumed_run_repeats_the_uninterrupted_one_exactly(tiny: ResolvedModel) -> None:
    # No seed, as from a person's options: the resumed run must take the checkpoint's.
    config = LoraConfig(
        rank=4, steps=30, learning_rate=1e-2, checkpoint_every=10, batch_size=2, random_flip=True
    )
    captions = [CAPTION, CAPTION + " smiling"] * 2
    saved: dict[int, bytes] = {}
    full = trainer(tiny, config, captions).train(
        lambda _: None, checkpoint=lambda state, step: saved.__setitem__(step, state)
    )
    assert sorted(saved) == [10, 20, 30]

    # A new process: fresh components, the same photos, the checkpoint of step 10.
    steps: list[int] = []
    resumed = trainer(tiny, config, captions).train(
        lambda info: steps.append(info.step), resume=saved[10]
    )
    assert steps == list(range(11, 31))
    assert resumed.loss_curve == full.loss_curve  # bit for bit, the first 10 from the checkpoint
    assert resumed.adapter_state.keys() == full.adapter_state.keys()
    for key, value in full.adapter_state.items():
        assert torch.equal(resumed.adapter_state[key], value), key

    # The final checkpoint resumes to an immediate result.
    again = trainer(tiny, config, captions).train(
        lambda _: pytest.fail("no steps left"), resume=saved[30]
    )
    assert again.steps == 30 and again.loss_curve == full.loss_curve

    with pytest.raises(CheckpointMismatch, match="other training options"):
        trainer(tiny, replace(config, rank=8), captions).train(lambda _: None, resume=saved[10])
    with pytest.raises(CheckpointMismatch, match="from seed"):
        trainer(tiny, replace(config, seed=full.seed + 1), captions).train(
            lambda _: None, resume=saved[10]
        )
    with pytest.raises(CheckpointMismatch, match="other images or captions"):
        trainer(tiny, config).train(lambda _: None, resume=saved[10])


def test_cancelling_from_on_step_stops_training_at_once(tiny: ResolvedModel) -> None:
    t = trainer(tiny, LoraConfig(rank=4, steps=50, checkpoint_every=1, seed=0))
    seen: list[int] = []
    checkpoints: list[int] = []

    def on_step(info: StepInfo) -> None:
        seen.append(info.step)
        if info.step == 3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        t.train(on_step, checkpoint=lambda _, step: checkpoints.append(step))
    assert seen == [1, 2, 3]
    assert checkpoints == [1, 2]
