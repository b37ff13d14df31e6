"""LoRA training of the SD 1.5 UNet: the diffusers DreamBooth-LoRA recipe, made fast.

Same objective and defaults as diffusers' `train_dreambooth_lora.py` (LoRA on the UNet's
attention projections, Gaussian init, AdamW with weight decay 1e-2, gradient clipping at 1.0,
constant learning rate, MSE on the noise or velocity). What makes it faster:

- Each image goes through the VAE once. The latent distribution (mean and std) is cached and
  every step samples from it, exactly what encoding every step would draw from. With
  `random_flip`, both orientations are cached.
- Each caption goes through the frozen text encoder once.
- Afterwards the VAE and text encoder leave the GPU: training holds only the UNet.
- bf16 autocast on CUDA (fp16 with loss scaling where bf16 is unsupported), fp32 on CPU,
  SDPA attention (diffusers' default), fused AdamW over only the LoRA parameters, optional
  gradient checkpointing.

Every random draw comes from a generator seeded from the config and saved in checkpoints,
and data order is a pure function of (seed, step), so a run resumed from a checkpoint on the
CPU repeats the uninterrupted run's loss curve and weights bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import resource
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from myspinbot.errors import PermanentError
from myspinbot.models.hf import hf
from myspinbot.models.loading import Components

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
CHECKPOINT_FORMAT = 1


class LoraConfigError(PermanentError, ValueError):
    """A training option is out of range; the message says which and why."""


class CheckpointMismatch(ValueError):
    """The checkpoint is of another run (options, seed or photos): start over instead."""


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 16
    alpha: float | None = None
    """LoRA alpha; the update is scaled by alpha / rank. None: rank (a scale of 1)."""
    steps: int = 500
    learning_rate: float = 1e-4
    batch_size: int = 1
    seed: int | None = None
    """None: a random seed, reported in the result so the run can be repeated."""
    resolution: int | None = None
    """Training image size; None: the base model's native size."""
    gradient_checkpointing: bool = False
    checkpoint_every: int | None = None
    """None: every max(steps // 10, 50) steps."""
    random_flip: bool = False
    """Off by default: faces are not symmetric (a parting, a mole) and a LoRA learns the flip."""
    max_grad_norm: float = 1.0
    weight_decay: float = 1e-2
    target_modules: tuple[str, ...] = TARGET_MODULES

    def __post_init__(self) -> None:
        checks = [
            (self.rank >= 1, f"rank must be at least 1, got {self.rank}"),
            (self.alpha is None or self.alpha > 0, f"alpha must be positive, got {self.alpha}"),
            (self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (self.learning_rate > 0, f"learning rate must be positive, got {self.learning_rate}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.resolution is None or self.resolution >= 8, "resolution must be at least 8"),
            (
                self.checkpoint_every is None or self.checkpoint_every >= 1,
                "checkpoint_every must be at least 1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise LoraConfigError(message)

    def resolved(self, native_resolution: int) -> LoraConfig:
        """This config with every None replaced by its actual value."""
        return replace(
            self,
            alpha=float(self.alpha if self.alpha is not None else self.rank),
            seed=self.seed if self.seed is not None else secrets.randbelow(2**31),
            resolution=self.resolution or native_resolution,
            checkpoint_every=self.checkpoint_every or max(self.steps // 10, 50),
        )


@dataclass(frozen=True)
class StepInfo:
    step: int
    """Steps done so far, 1-based: `total_steps` at the last one."""
    total_steps: int
    loss: float
    it_per_s: float
    eta_s: float


@dataclass
class TrainResult:
    adapter_state: dict[str, torch.Tensor]
    """The LoRA in diffusers keys (`<module>.lora.down.weight`, ...), fp32 on the CPU."""
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    loss_curve: list[float]
    """Training loss of every step."""
    steps: int
    seconds: float
    """Time in the training loop, summed over resumed runs."""
    peak_memory_bytes: int
    """CUDA: peak allocated since `prepare`. CPU: peak RSS minus RSS when `prepare` began."""
    seed: int
    resolution: int
    device: str


@dataclass
class _Data:
    """Everything the loop reads, cached on the device by `prepare`."""

    latent_mean: torch.Tensor  # [flips, n, C, h, w], scaled like the UNet's input
    latent_std: torch.Tensor
    embeddings: torch.Tensor  # [unique captions, tokens, dim]
    caption_index: torch.Tensor  # [n] -> row of `embeddings`
    fingerprint: str
    epoch_order: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.caption_index.shape[0])


class LoraTrainer:
    """Adds a LoRA to `components.unet` and trains it. One trainer per set of components."""

    def __init__(
        self, components: Components, config: LoraConfig, device: str | torch.device
    ) -> None:
        self.device = torch.device(device)
        self._unet = components.unet
        self._vae: Any = components.vae
        self._text_encoder: Any = components.text_encoder
        self._tokenizer = components.tokenizer
        self._scheduler = components.noise_scheduler

        self._vae_scale = 2 ** (len(self._vae.config.block_out_channels) - 1)
        self.config = config.resolved(self._unet.config.sample_size * self._vae_scale)
        self._check_resolution()
        self.seed = int(self.config.seed or 0)
        self._seed_given = config.seed is not None
        self.alpha = float(self.config.alpha or self.config.rank)

        self._amp_dtype = _autocast_dtype(self.device)
        self._params = self._add_lora()
        self._optimizer = _adamw(self._params, self.config, self.device)
        # Loss scaling only for fp16; a disabled scaler passes everything through.
        self._scaler = torch.amp.GradScaler(
            self.device.type, enabled=self._amp_dtype == torch.float16
        )
        self._generator = torch.Generator(self.device).manual_seed(self.seed)

        self._data: _Data | None = None
        self._step = 0
        self._loss_curve: list[float] = []
        self._seconds = 0.0
        self._rss_at_prepare = 0

    @property
    def unet(self) -> Any:
        """The UNet with the LoRA being trained."""
        return self._unet

    # --- Setup ------------------------------------------------------------------------

    def _check_resolution(self) -> None:
        # The UNet halves the latents once per down block but the last.
        multiple = self._vae_scale * 2 ** (len(self._unet.config.down_block_types) - 1)
        if int(self.config.resolution or 0) % multiple:
            raise LoraConfigError(
                f"resolution must be a multiple of {multiple} for this model, "
                f"got {self.config.resolution}"
            )

    def _add_lora(self) -> list[torch.nn.Parameter]:
        if getattr(self._unet, "peft_config", None):
            raise ValueError("this UNet already has a LoRA; load fresh components per trainer")
        self._unet.requires_grad_(False)
        peft_config = hf("peft").LoraConfig(
            r=self.config.rank,
            lora_alpha=self.alpha,
            init_lora_weights="gaussian",
            target_modules=list(self.config.target_modules),
        )
        # Seeded so the initial LoRA is part of what `seed` reproduces.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(self.seed)
            self._unet.add_adapter(peft_config)
        params = [p for p in self._unet.parameters() if p.requires_grad]
        for p in params:
            # Trainable weights stay fp32 under mixed precision, like `cast_training_params`.
            p.data = p.data.float()
        if self.config.gradient_checkpointing:
            self._unet.enable_gradient_checkpointing()
        self._unet.train()
        return params

    def prepare(self, images: Sequence[Image.Image], captions: Sequence[str]) -> None:
        """Encode the images and captions once; then free the VAE and text encoder.

        Images should already be square crops at the training resolution (others are
        centre-cropped and resized). Call once, before `train`.
        """
        if self._vae is None:
            raise RuntimeError("prepare() was already called")
        if not images or len(images) != len(captions):
            raise ValueError(
                f"need one caption per image: {len(images)} images, {len(captions)} captions"
            )
        self._reset_peak_memory()
        resolution = int(self.config.resolution or 0)
        pixels = torch.stack([_to_uint8_tensor(img, resolution) for img in images])
        fingerprint = _fingerprint(pixels, captions)
        pixels_f = pixels.float() / 127.5 - 1.0

        unique = list(dict.fromkeys(captions))
        with torch.no_grad():
            stats = [self._encode_images(pixels_f)]
            if self.config.random_flip:
                stats.append(self._encode_images(pixels_f.flip(-1)))
            embeddings = self._encode_captions(unique)
        self._data = _Data(
            latent_mean=torch.stack([m for m, _ in stats]),
            latent_std=torch.stack([s for _, s in stats]),
            embeddings=embeddings,
            caption_index=torch.tensor([unique.index(c) for c in captions]),
            fingerprint=fingerprint,
        )
        self._release_encoders()

    def _encode_images(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self._vae
        shift = vae.config.shift_factor or 0.0
        scale = vae.config.scaling_factor
        means, stds = [], []
        for chunk in torch.split(pixels, 4):
            dist = vae.encode(chunk.to(self.device, vae.dtype)).latent_dist
            means.append((dist.mean.float() - shift) * scale)
            stds.append(dist.std.float() * scale)
        return torch.cat(means), torch.cat(stds)

    def _encode_captions(self, captions: list[str]) -> torch.Tensor:
        ids = self._tokenizer(
            captions,
            padding="max_length",
            max_length=self._tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        hidden: torch.Tensor = self._text_encoder(ids.to(self.device), return_dict=False)[0]
        return hidden.float()

    def _release_encoders(self) -> None:
        if self.device.type == "cuda":
            self._vae.to("cpu")
            self._text_encoder.to("cpu")
            torch.cuda.empty_cache()
        # Dropping our references frees them on the CPU too, once the caller drops theirs.
        self._vae = None
        self._text_encoder = None

    # --- Training ---------------------------------------------------------------------

    def train(
        self,
        on_step: Callable[[StepInfo], None],
        checkpoint: Callable[[bytes, int], None] | None = None,
        resume: bytes | None = None,
    ) -> TrainResult:
        """Train to `config.steps`, calling `on_step` after every step.

        An exception from `on_step` (JobCancelled, say) stops training at once and
        propagates. `checkpoint(state, step)` gets the full training state every
        `checkpoint_every` steps and after the last; pass such a state as `resume` to go
        on from its step.
        """
        data = self._require_data()
        if resume is not None:
            self._restore(resume, data)
        total = self.config.steps
        every = int(self.config.checkpoint_every or total)
        durations: deque[float] = deque(maxlen=20)
        started = time.perf_counter()
        while self._step < total:
            loss = self._train_step(data, self._step).item()
            self._step += 1
            self._loss_curve.append(loss)
            durations.append(time.perf_counter() - started)
            self._seconds += durations[-1]
            it_per_s = len(durations) / max(sum(durations), 1e-9)
            on_step(StepInfo(self._step, total, loss, it_per_s, (total - self._step) / it_per_s))
            if checkpoint is not None and (self._step % every == 0 or self._step == total):
                checkpoint(self.state_bytes(), self._step)
            # The callbacks' time (progress reports, uploads) is not training time.
            started = time.perf_counter()
        return self._result()

    def _train_step(self, data: _Data, step: int) -> torch.Tensor:
        idx, flips = self._batch(data, step)
        g = self._generator
        mean = data.latent_mean[flips, idx]
        std = data.latent_std[flips, idx]
        latents = mean + std * _randn(mean.shape, g)
        noise = _randn(latents.shape, g)
        timesteps = torch.randint(
            0,
            self._scheduler.config.num_train_timesteps,
            (latents.shape[0],),
            generator=g,
            device=self.device,
        )
        noisy = self._scheduler.add_noise(latents, noise, timesteps)
        target = self._target(latents, noise, timesteps)
        with self._autocast():
            pred = self._unet(
                noisy,
                timesteps,
                encoder_hidden_states=data.embeddings[data.caption_index[idx]],
                return_dict=False,
            )[0]
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        torch.autograd.backward(self._scaler.scale(loss))
        self._scaler.unscale_(self._optimizer)
        torch.nn.utils.clip_grad_norm_(self._params, self.config.max_grad_norm)
        self._scaler.step(self._optimizer)
        self._scaler.update()
        self._optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _target(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        kind = self._scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            velocity: torch.Tensor = self._scheduler.get_velocity(latents, noise, timesteps)
            return velocity
        raise PermanentError(f"Unsupported prediction type of the base model: {kind!r}")

    def _batch(self, data: _Data, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and flips of `step`: epochs of seeded shuffles, a pure function of step."""
        n, size = data.size, self.config.batch_size
        idx, flips = [], []
        for position in range(step * size, (step + 1) * size):
            epoch, k = divmod(position, n)
            if epoch not in data.epoch_order:
                data.epoch_order.clear()  # only the current epoch is ever needed again
                rng = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
                order = torch.randperm(n, generator=rng).tolist()
                flip = torch.randint(0, 2, (n,), generator=rng).tolist()
                data.epoch_order[epoch] = (order, flip if self.config.random_flip else [0] * n)
            order, flip = data.epoch_order[epoch]
            idx.append(order[k])
            flips.append(flip[k])
        return torch.tensor(idx), torch.tensor(flips)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self._amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    # --- Evaluation -------------------------------------------------------------------

    def eval_loss(self, seed: int = 0, timesteps_per_image: int = 4, max_images: int = 16) -> float:
        """Loss on a fixed batch: the same images, noise and timesteps on every call.

        Training loss is one random draw per step and too noisy to show progress; this is
        comparable across calls. Latent means, no flips, timesteps spread evenly over the
        schedule; the draws come from `seed` and leave the training generator alone.
        """
        data = self._require_data()
        n = min(data.size, max_images)
        latents = data.latent_mean[0, :n].repeat(timesteps_per_image, 1, 1, 1)
        captions = data.caption_index[:n].repeat(timesteps_per_image)
        total_t = int(self._scheduler.config.num_train_timesteps)
        spread = [
            int((j + 0.5) * total_t / timesteps_per_image) for j in range(timesteps_per_image)
        ]
        timesteps = torch.tensor(spread).repeat_interleave(n).to(self.device)
        rng = torch.Generator().manual_seed(seed)
        noise = torch.randn(latents.shape, generator=rng).to(self.device)
        noisy = self._scheduler.add_noise(latents, noise, timesteps)
        target = self._target(latents, noise, timesteps)

        squared_error = 0.0
        with torch.no_grad(), self._autocast():
            for rows in torch.split(torch.arange(latents.shape[0]), 8):
                pred = self._unet(
                    noisy[rows],
                    timesteps[rows],
                    encoder_hidden_states=data.embeddings[captions[rows]],
                    return_dict=False,
                )[0]
                squared_error += F.mse_loss(
                    pred.float(), target[rows].float(), reduction="sum"
                ).item()
        return squared_error / target.numel()

    # --- State ------------------------------------------------------------------------

    def state_bytes(self) -> bytes:
        """Everything needed to continue exactly here: LoRA, optimizer, RNG, history."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self._step,
            "seed": self.seed,
            "fingerprint": self._require_data().fingerprint,
            "config": self._config_key(),
            "lora": {n: p.detach().cpu() for n, p in self._lora_named_parameters()},
            "optimizer": self._optimizer.state_dict(),
            "scaler": self._scaler.state_dict(),
            "generator": self._generator.get_state(),
            "loss_curve": list(self._loss_curve),
            "seconds": self._seconds,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def _restore(self, blob: bytes, data: _Data) -> None:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {state.get('format')!r}")
        if state["config"] != self._config_key():
            raise CheckpointMismatch(
                f"the checkpoint is from other training options: {state['config']}, "
                f"not {self._config_key()}"
            )
        if self._seed_given and state["seed"] != self.seed:
            raise CheckpointMismatch(
                f"the checkpoint is from seed {state['seed']}, not {self.seed}"
            )
        if state["fingerprint"] != data.fingerprint:
            raise CheckpointMismatch("the checkpoint was trained on other images or captions")
        # Without a seed of its own, this run continues the checkpoint's (random) one.
        self.seed = int(state["seed"])
        self.config = replace(self.config, seed=self.seed)
        with torch.no_grad():
            for name, param in self._lora_named_parameters():
                param.copy_(state["lora"][name])
        self._optimizer.load_state_dict(state["optimizer"])
        self._scaler.load_state_dict(state["scaler"])
        self._generator.set_state(state["generator"])
        self._step = int(state["step"])
        self._loss_curve = [float(v) for v in state["loss_curve"]]
        self._seconds = float(state["seconds"])

    def _config_key(self) -> dict[str, Any]:
        c = self.config
        return {
            "rank": c.rank,
            "alpha": self.alpha,
            "steps": c.steps,
            "learning_rate": c.learning_rate,
            "batch_size": c.batch_size,
            "resolution": c.resolution,
            "random_flip": c.random_flip,
            "target_modules": list(c.target_modules),
        }

    def _lora_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self._unet.named_parameters() if p.requires_grad]

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The LoRA in diffusers keys, as diffusers' own training scripts save it."""
        peft_state = hf("peft.utils").get_peft_model_state_dict(self._unet)
        state = hf("diffusers.utils").convert_state_dict_to_diffusers(peft_state)
        return {k: v.detach().to("cpu", torch.float32).clone() for k, v in state.items()}

    def _result(self) -> TrainResult:
        return TrainResult(
            adapter_state=self.adapter_state(),
            rank=self.config.rank,
            alpha=self.alpha,
            target_modules=self.config.target_modules,
            loss_curve=list(self._loss_curve),
            steps=self._step,
            seconds=self._seconds,
            peak_memory_bytes=self._peak_memory(),
            seed=self.seed,
            resolution=int(self.config.resolution or 0),
            device=str(self.device),
        )

    def _require_data(self) -> _Data:
        if self._data is None:
            raise RuntimeError("call prepare() first")
        return self._data

    # --- Memory -----------------------------------------------------------------------

    def _reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._rss_at_prepare = current_rss_bytes()

    def _peak_memory(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return max(0, peak_rss_bytes() - self._rss_at_prepare)


# --- Helpers ------------------------------------------------------------------------------


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _adamw(
    params: list[torch.nn.Parameter], config: LoraConfig, device: torch.device
) -> torch.optim.AdamW:
    kwargs: dict[str, Any] = {
        "lr": config.learning_rate,
        "betas": (0.9, 0.999),
        "weight_decay": config.weight_decay,
        "eps": 1e-8,
    }
    try:
        # One kernel for all LoRA tensors instead of several per tensor.
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, foreach=device.type == "cuda", **kwargs)


def _randn(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device)


def _to_uint8_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    image = image.convert("RGB")
    if image.size != (resolution, resolution):
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def _fingerprint(pixels: torch.Tensor, captions: Sequence[str]) -> str:
    digest = hashlib.sha256(pixels.numpy().tobytes())
    for caption in captions:
        digest.update(b"\0" + caption.encode())
    return digest.hexdigest()


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes, Linux: KiB


__all__ = [
    "CheckpointMismatch",
    "LoraConfig",
    "LoraConfigError",
    "LoraTrainer",
    "StepInfo",
    "TrainResult",
]
