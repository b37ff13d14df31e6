"""The diffusion loop around Triton: tokenizer and scheduler here, every network in Triton.

`TritonTxt2Img.__call__` is diffusers' `StableDiffusionPipeline.__call__` step for step
(prompt encoding with an empty negative prompt, the same latents from the same seeded
generator, classifier-free guidance, the scheduler's step, VAE decoding and
post-processing), with the three networks replaced by Triton requests. So the same base
model, LoRA, scheduler and seed give the same image as the in-process pipeline
(`diffusers_pipeline`, the reference and the benchmark baseline), up to ONNX Runtime's
float rounding.

The loop runs in the caller (the generate function) rather than in a Triton BLS model:
the scheduler is diffusers' own code, so every diffusers scheduler works unchanged, and
the UNet requests of concurrent generations meet in Triton's dynamic batcher.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from myspinbot.errors import PermanentError
from myspinbot.models.hf import hf
from myspinbot.triton import repository as repo
from myspinbot.triton.client import TritonClient

# Option name -> diffusers scheduler class. "default" is the model's own (PNDM for SD 1.5).
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
}

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Txt2ImgOptions:
    steps: int = 25
    guidance_scale: float = 7.5
    scheduler: str = "default"
    seed: int = 0
    width: int | None = None  # None: the model's native size
    height: int | None = None
    negative_prompt: str = ""


class BaseModelConfig:
    """What the loop needs from the base model directory: tokenizer and configs, no weights."""

    def __init__(self, path: str | Path) -> None:
        diffusers, transformers = hf("diffusers"), hf("transformers")
        self.path = str(path)
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(
            self.path, subfolder="tokenizer"
        )
        self.scheduler_config = diffusers.PNDMScheduler.load_config(
            self.path, subfolder="scheduler"
        )
        vae = diffusers.AutoencoderKL.load_config(self.path, subfolder="vae")
        unet = diffusers.UNet2DConditionModel.load_config(self.path, subfolder="unet")
        self.vae_scale_factor = 2 ** (len(vae["block_out_channels"]) - 1)
        self.scaling_factor = float(vae.get("scaling_factor", 0.18215))
        self.latent_channels = int(unet.get("in_channels", 4))
        self.native_size = int(unet["sample_size"]) * self.vae_scale_factor


@functools.lru_cache(maxsize=4)
def base_model_config(path: str) -> BaseModelConfig:
    """One BaseModelConfig per model directory and process: jobs reuse the tokenizer."""
    return BaseModelConfig(path)


def make_scheduler(name: str, config: dict[str, Any]) -> Any:
    diffusers = hf("diffusers")
    if name == "default":
        class_name = str(config.get("_class_name", "PNDMScheduler"))
    elif name in SCHEDULERS:
        class_name = SCHEDULERS[name]
    else:
        raise PermanentError(
            f"Unknown scheduler {name!r}; choose one of: default, {', '.join(SCHEDULERS)}."
        )
    return getattr(diffusers, class_name).from_config(config)


class TritonTxt2Img:
    def __init__(self, base: BaseModelConfig, triton: TritonClient) -> None:
        self.base = base
        self.triton = triton

    def __call__(
        self,
        prompt: str,
        options: Txt2ImgOptions = Txt2ImgOptions(),
        *,
        unet_model: str = repo.UNET,
        on_step: StepCallback | None = None,
    ) -> NDArray[Any]:
        """Render `prompt`; returns an HxWx3 float32 image in [0, 1]."""
        base = self.base
        height = options.height or base.native_size
        width = options.width or base.native_size
        factor = base.vae_scale_factor
        if height % factor or width % factor:
            raise PermanentError(f"Image sizes must be multiples of {factor} for this model.")
        guided = options.guidance_scale > 1.0

        # 1. Prompt embeddings: [negative, positive] for classifier-free guidance.
        prompts = [options.negative_prompt, prompt] if guided else [prompt]
        ids = base.tokenizer(
            prompts,
            padding="max_length",
            max_length=base.tokenizer.model_max_length,
            truncation=True,
            return_tensors="np",
        ).input_ids.astype(np.int64)
        context = self.triton.infer(repo.TEXT_ENCODER, {"input_ids": ids}, ["last_hidden_state"])[
            "last_hidden_state"
        ]

        # 2. The same initial noise as diffusers' pipeline draws for this seed.
        scheduler = make_scheduler(options.scheduler, base.scheduler_config)
        scheduler.set_timesteps(options.steps)
        generator = torch.Generator("cpu").manual_seed(options.seed)
        shape = (1, base.latent_channels, height // factor, width // factor)
        latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
        extra: dict[str, Any] = {}
        step_params = inspect.signature(scheduler.step).parameters
        if "eta" in step_params:
            extra["eta"] = 0.0
        if "generator" in step_params:
            extra["generator"] = generator

        # 3. Denoise.
        timesteps = scheduler.timesteps
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            batch = model_input.shape[0]
            noise = self.triton.infer(
                unet_model,
                {
                    "sample": model_input.numpy().astype(np.float32),
                    "timestep": np.full((batch, 1), float(t), dtype=np.float32),
                    "encoder_hidden_states": context,
                },
                ["out_sample"],
            )["out_sample"]
            noise_pred = torch.from_numpy(np.array(noise))
            if guided:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + options.guidance_scale * (text - uncond)
            latents = scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
            if on_step is not None:
                on_step(i + 1, len(timesteps))

        # 4. Decode and post-process as diffusers' VaeImageProcessor does.
        latent = (latents / base.scaling_factor).numpy().astype(np.float32)
        image = self.triton.infer(repo.VAE_DECODER, {"latent": latent}, ["image"])["image"]
        out: NDArray[Any] = np.clip(image[0] / 2 + 0.5, 0.0, 1.0).transpose(1, 2, 0)
        return out.astype(np.float32)


def diffusers_pipeline(
    path: str | Path, scheduler: str = "default", lora_dir: Path | None = None
) -> Any:
    """The in-process reference: diffusers' StableDiffusionPipeline on the same model (fp32,
    CPU), with the same scheduler choice and, optionally, a diffusers LoRA directory
    (loaded and fused)."""
    diffusers = hf("diffusers")
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        str(path), safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = make_scheduler(scheduler, dict(pipe.scheduler.config))
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir))
        # Fused, as Triton's LoRA models are: W + scale * B @ A. Unfused (x W + scale *
        # (x A) B) rounds differently, ~1e-5 per UNet call, which guidance amplifies.
        pipe.fuse_lora()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render_reference(
    pipe: Any, prompt: str, options: Txt2ImgOptions = Txt2ImgOptions()
) -> NDArray[Any]:
    """What the in-process pipeline renders for the same inputs (HxWx3 float32 in [0, 1])."""
    out = pipe(
        prompt,
        num_inference_steps=options.steps,
        guidance_scale=options.guidance_scale,
        negative_prompt=options.negative_prompt or None,
        height=options.height,
        width=options.width,
        generator=torch.Generator("cpu").manual_seed(options.seed),
        output_type="np",
    )
    return np.asarray(out.images[0], dtype=np.float32)
