"""Images through Triton equal the in-process diffusers pipeline, with and without LoRA."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from myspinbot.imaging.txt2img import (
    BaseModelConfig,
    TritonTxt2Img,
    Txt2ImgOptions,
    diffusers_pipeline,
    make_scheduler,
    render_reference,
)
from myspinbot.triton.client import TritonClient
from myspinbot.triton.lora import LoraModels
from myspinbot.triton.server import EmbeddedTriton
from tests.triton_support import Exported

PROMPT = "a photo of sks person"
TOLERANCE = 1e-3  # max abs pixel difference, pixels in [0, 1] (the bound)


def _render(
    triton: EmbeddedTriton, exported: Exported, options: Txt2ImgOptions, unet: str = "unet"
) -> np.ndarray:
    client = TritonClient(triton.url, admin_key=triton.admin_key)
    try:
        pipe = TritonTxt2Img(BaseModelConfig(exported.base.path_or_id), client)
        return pipe(PROMPT, options, unet_model=unet)
    finally:
        client.close()


# What each option name must mean, written down here rather than read from the product's
# table: the reference pipeline below is built from this, so a name mapped to the wrong
# scheduler in the product renders a different image through Triton.
EXPECTED_SCHEDULERS = {
    "default": "PNDMScheduler",  # the model's own (its scheduler_config.json)
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
}


def reference_pipeline(path: str, scheduler: str) -> Any:
    """diffusers' own StableDiffusionPipeline with the scheduler class the name means."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        path, safety_checker=None, requires_safety_checker=False
    )
    assert type(pipe.scheduler).__name__ == EXPECTED_SCHEDULERS["default"]
    cls = getattr(diffusers, EXPECTED_SCHEDULERS[scheduler])
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEDULERS))
def test_each_scheduler_name_means_its_diffusers_scheduler(exported: Exported, name: str) -> None:
    config = BaseModelConfig(exported.base.path_or_id).scheduler_config
    assert type(make_scheduler(name, dict(config))).__name__ == EXPECTED_SCHEDULERS[name]


@pytest.mark.parametrize("scheduler", ["default", "ddim", "euler", "dpm"])
def test_triton_image_equals_in_process_pipeline(
    triton: EmbeddedTriton, exported: Exported, scheduler: str
) -> None:
    options = Txt2ImgOptions(steps=8, seed=7, scheduler=scheduler)
    ours = _render(triton, exported, options)
    reference = render_reference(
        reference_pipeline(str(exported.base.path_or_id), scheduler), PROMPT, options
    )
    assert ours.shape == reference.shape == (64, 64, 3)
    assert np.abs(ours - reference).max() <= TOLERANCE
    # Not vacuous: another seed gives another image.
    other = _render(triton, exported, Txt2ImgOptions(steps=8, seed=8, scheduler=scheduler))
    assert np.abs(other - ours).max() > 0.05


def test_without_guidance_and_at_another_size(triton: EmbeddedTriton, exported: Exported) -> None:
    options = Txt2ImgOptions(steps=5, seed=1, guidance_scale=1.0, width=96, height=64)
    ours = _render(triton, exported, options)
    reference = render_reference(diffusers_pipeline(exported.base.path_or_id), PROMPT, options)
    assert ours.shape == (64, 96, 3)
    assert np.abs(ours - reference).max() <= TOLERANCE


def test_profile_lora_is_used_without_a_restart_and_profiles_do_not_mix(
    triton: EmbeddedTriton, exported: Exported, loras: tuple[Path, Path], redis_url: str
) -> None:
    """Acceptance 2 and 4 (model level): LoRA output equals in-process LoRA output, differs
    from the base; two profiles rendered at the same time each get their own."""
    options = Txt2ImgOptions(steps=6, seed=3)
    base_path = exported.base.path_or_id
    expected = {
        name: render_reference(diffusers_pipeline(base_path, lora_dir=lora), PROMPT, options)
        for name, lora in zip("ab", loras, strict=True)
    }
    base_image = render_reference(diffusers_pipeline(base_path), PROMPT, options)

    r = redis.Redis.from_url(redis_url)
    r.delete("myspinbot:triton:lora-lru")
    client = TritonClient(triton.url, admin_key=triton.admin_key)
    manager = LoraModels(client, r, max_loaded=4)
    files = {
        n: (lora / "pytorch_lora_weights.safetensors").read_bytes()
        for n, lora in zip("ab", loras, strict=True)
    }
    models = {n: manager.ensure(f"profile-{n}", lambda n=n: files[n]) for n in "ab"}
    client.close()
    assert all(m.load_seconds is not None for m in models.values())  # loaded now, live

    with ThreadPoolExecutor(4) as pool:
        futures = {
            (n, i): pool.submit(_render, triton, exported, options, models[n].name)
            for n in "ab"
            for i in range(2)
        }
        results = {key: f.result() for key, f in futures.items()}
    for (name, _), image in results.items():
        assert np.abs(image - expected[name]).max() <= TOLERANCE, name
        assert np.abs(image - base_image).max() > 0.01
    assert np.abs(expected["a"] - expected["b"]).max() > 0.01

    # The base model still works, unchanged, next to the LoRA models.
    assert np.abs(_render(triton, exported, options) - base_image).max() <= TOLERANCE
