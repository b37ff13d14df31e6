"""Stand-in base models with random weights, built from configs and never downloaded.

Each preset is written as a complete diffusers `StableDiffusionPipeline` directory
(`model_index.json`, unet, vae, text_encoder, tokenizer, scheduler), so the rest of the
code loads it through the same `from_pretrained` calls as a real SD 1.5 checkpoint:

- `tiny`: SD 1.5 shrunk to a ~1M-parameter UNet at 64 px: the same block structure (two
  layers per block in UNet and VAE, attention at the high-resolution level and none at the
  lowest, a 4-channel latent), fewer channels and levels. Trains in seconds on a CPU.
- `sd15-arch`: the exact SD 1.5 architecture (860M UNet, ViT-L/14 text encoder, 4-channel
  VAE) at 512 px, for real-size speed and memory measurements on a GPU. About 4.3 GB in fp32.

Random weights render noise, not people: a LoRA trained on a preset proves the pipeline,
not the likeness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from myspinbot.models.hf import hf
from myspinbot.models.tokenizer import MODEL_MAX_LENGTH, build_vocab, write_tokenizer

# Bump when a recipe changes, so cached builds of the old recipe are rebuilt.
RECIPE_VERSION = 2
PRESET_INFO_FILE = "myspinbot_preset.json"

# SD 1.5's own scheduler config (a PNDM scheduler over the scaled-linear beta schedule).
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


@dataclass(frozen=True)
class Preset:
    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    # None: a vocabulary just big enough for caption words; else padded to this size.
    vocab_size: int | None
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD15_SCHEDULER))

    @property
    def vae_scale_factor(self) -> int:
        return int(2 ** (len(self.vae["block_out_channels"]) - 1))

    @property
    def native_resolution(self) -> int:
        return int(self.unet["sample_size"]) * self.vae_scale_factor


# The VAE downsamples 4x, not SD's 8x: a 64 px image gives 16x16 latents, room for two levels.
TINY = Preset(
    name="tiny",
    unet={
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [32, 64],
        "layers_per_block": 2,
        # As in SD: attention at the high-resolution level, none at the lowest.
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32,
        "attention_head_dim": 2,
        "norm_num_groups": 32,
    },
    vae={
        "sample_size": 64,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 2,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "norm_num_groups": 32,
    },
    text_encoder={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "projection_dim": 32,
        "max_position_embeddings": MODEL_MAX_LENGTH,
        "hidden_act": "quick_gelu",
    },
    vocab_size=None,
)

# Field for field the configs of runwayml/stable-diffusion-v1-5.
SD15_ARCH = Preset(
    name="sd15-arch",
    unet={
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "down_block_types": [
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ],
        "up_block_types": [
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ],
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "center_input_sample": False,
    },
    vae={
        "sample_size": 512,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "scaling_factor": 0.18215,
    },
    text_encoder={
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "projection_dim": 768,
        "max_position_embeddings": MODEL_MAX_LENGTH,
        "hidden_act": "quick_gelu",
        "vocab_size": 49408,
    },
    vocab_size=49408,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TINY, SD15_ARCH)}


def build_preset(name: str, dest: Path, seed: int = 0) -> Path:
    """Write preset `name` with weights drawn from `seed` into `dest` (created); returns it.

    The same name, seed and library versions give byte-identical weight files.
    """
    diffusers = hf("diffusers")
    preset = PRESETS.get(name)
    if preset is None:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")

    dest.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = dest / "tokenizer"
    vocab_size = write_tokenizer(tokenizer_dir, preset.vocab_size)
    tokenizer = hf("transformers").CLIPTokenizer.from_pretrained(str(tokenizer_dir))

    # A private RNG stream: building a preset must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = _text_encoder(preset, vocab_size, tokenizer)
        vae = _vae(preset)
        unet = _unet(preset)

    scheduler = diffusers.PNDMScheduler(**preset.scheduler)
    # SD 1.5's scheduler config also carries clip_sample=False, which PNDM ignores but the
    # training scheduler (DDPMScheduler, loaded from this same config) would default to True.
    scheduler.register_to_config(clip_sample=False)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(dest), safe_serialization=True)
    # save_pretrained rewrote the tokenizer's configs; put back the vocab files SD 1.5 ships.
    write_tokenizer(tokenizer_dir, preset.vocab_size)
    info = {
        "preset": name,
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "placeholder": True,
        "note": "random weights: renders noise, not people",
    }
    (dest / PRESET_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return dest


def read_preset_info(path: Path) -> dict[str, Any] | None:
    """The build record of a preset directory, or None if `path` is not one."""
    try:
        info = json.loads((path / PRESET_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _text_encoder(preset: Preset, vocab_size: int, tokenizer: Any) -> Any:
    transformers = hf("transformers")
    config = transformers.CLIPTextConfig(
        **{**preset.text_encoder, "vocab_size": vocab_size},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.CLIPTextModel(config).eval()


def _vae(preset: Preset) -> Any:
    vae = hf("diffusers").AutoencoderKL(**preset.vae)
    latent_channels = preset.vae["latent_channels"]
    with torch.no_grad():
        # The encoder's second half of channels is the posterior's log-variance. Random
        # weights make it ~0 (std 1, swamping the image); SD's VAE was trained to a near-zero
        # std, so pin it there (std e^-6) and a latent sample is, as in SD, almost its mean.
        vae.quant_conv.weight[latent_channels:].zero_()
        vae.quant_conv.bias[latent_channels:].fill_(-12.0)
    if "scaling_factor" not in preset.vae:
        # Like SD's 0.18215: the factor that gives latents unit variance, here measured on
        # seeded noise images because a random VAE has no natural-image statistics.
        images = torch.rand(4, 3, preset.vae["sample_size"], preset.vae["sample_size"]) * 2 - 1
        with torch.no_grad():
            std = vae.encode(images).latent_dist.mean.std().item()
        vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    return vae.eval()


def _unet(preset: Preset) -> Any:
    return hf("diffusers").UNet2DConditionModel(**preset.unet).eval()


def count_parameters(name: str) -> dict[str, int]:
    """Parameter counts of a preset's models, without allocating any weights."""
    diffusers, transformers = hf("diffusers"), hf("transformers")
    preset = PRESETS[name]
    vocab_size = len(build_vocab(preset.vocab_size)[0])
    with torch.device("meta"):
        models = {
            "unet": diffusers.UNet2DConditionModel(**preset.unet),
            "vae": diffusers.AutoencoderKL(**preset.vae),
            "text_encoder": transformers.CLIPTextModel(
                transformers.CLIPTextConfig(
                    **{**preset.text_encoder, "vocab_size": vocab_size},
                    bos_token_id=vocab_size - 2,
                    eos_token_id=vocab_size - 1,
                    pad_token_id=vocab_size - 1,
                )
            ),
        }
    return {key: sum(p.numel() for p in model.parameters()) for key, model in models.items()}
