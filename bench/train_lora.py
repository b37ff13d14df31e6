"""LoRA training speed and memory: MySpinBot's trainer vs a plain DreamBooth-LoRA loop.

    python bench/train_lora.py                       # tiny preset, CPU
    python bench/train_lora.py --preset sd15-arch --resolution 512 --rank 16 --dtype bf16

Both variants train the same LoRA (UNet attention projections, same rank, seed, data,
learning rate and steps) on the same base model:

- baseline: what diffusers' `train_dreambooth_lora.py` does each step: transform the
  photo, VAE-encode it, tokenize and text-encode the caption, then the UNet step;
  the VAE and text encoder stay on the device; torch's default AdamW.
- myspinbot: `LoraTrainer` (latents and text embeddings cached once, encoders freed,
  fused AdamW).

Each variant runs in its own subprocess, so each one's peak memory is its own: peak RSS
on the CPU, `torch.cuda.max_memory_allocated` on CUDA. The variants alternate for
`--repeats` runs and the table shows medians. Steps/s (and CPU time per step, which a busy
machine disturbs less) count the steps after `--warmup`; "prepare + train s" also counts
the one-off caching. See bench/README_train.md for results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from myspinbot.models.loading import (  # noqa: E402
    Components,
    load_components,
    resolve_base_model,
)
from myspinbot.training.lora import (  # noqa: E402
    LoraConfig,
    LoraTrainer,
    peak_rss_bytes,
)
from tests.models.support import CAPTION, shape_images  # noqa: E402

VARIANTS = ("baseline", "myspinbot")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    args = parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads is None and device == "cpu":
        # A 1M-parameter UNet step is too small to split across threads, and on a shared
        # machine preempted OpenMP threads wait on each other: one thread measures the trainer.
        args.threads = 1
    model = resolve_base_model(args.preset, args.cache_dir)  # built once, outside the timing
    console = Console(width=110)
    console.print(
        f"[bold]{model.spec}[/] on {device}: {args.steps} steps ({args.warmup} warm-up), "
        f"{args.images} images at {args.resolution or model.native_resolution} px, "
        f"rank {args.rank}, batch {args.batch_size}, dtype {args.dtype or 'auto'}, "
        f"torch threads {args.threads or torch.get_num_threads()}"
    )
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:  # interleaved, so a busy spell hits both alike
            runs[variant].append(run_subprocess(variant, args, device))
    print_table(console, {v: median_run(r) for v, r in runs.items()}, device, args)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each timing over the repeats, the highest memory peak."""
    out = dict(runs[0])
    for key in ("steps_per_s", "cpu_ms_per_step", "total_s"):
        out[key] = statistics.median(r[key] for r in runs)
    for key in ("peak_rss", "cuda_peak"):
        out[key] = max(r[key] or 0 for r in runs)
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="tiny, sd15-arch, a directory or hub id")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="runs of each variant; medians shown")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--resolution", type=int, default=None, help="default: the model's own")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="weights' dtype (default: bf16 on CUDA, fp32 on CPU)",
    )
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "myspinbot-bench-models"
    )
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    return p.parse_args()


def run_subprocess(variant: str, args: argparse.Namespace, device: str) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--variant", variant, "--device", device]
    for name, value in vars(args).items():
        if name in ("variant", "device") or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{variant} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = resolve_base_model(args.preset, args.cache_dir)
    dtype = DTYPES[args.dtype] if args.dtype else None
    resolution = args.resolution or model.native_resolution
    config = LoraConfig(
        rank=args.rank,
        steps=args.steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        resolution=resolution,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    images = shape_images(args.images, resolution)
    captions = [f"{CAPTION}, photo {i}" for i in range(args.images)]

    run = train_baseline if args.variant == "baseline" else train_myspinbot
    # Passed a loader, not the models: a variant that frees a model must hold its only reference.
    done = run(lambda: load_components(model, device, dtype), config, images, captions, device)
    wall, cpu = done.step_times[args.warmup :], done.cpu_times[args.warmup :]
    return {
        "variant": args.variant,
        "warmup": args.warmup,
        "steps": len(done.step_times),
        "steps_per_s": (len(wall) - 1) / (wall[-1] - wall[0]),
        "cpu_ms_per_step": 1000 * (cpu[-1] - cpu[0]) / (len(cpu) - 1),
        "total_s": done.step_times[-1] - done.started,
        "final_loss": sum(done.losses[-10:]) / len(done.losses[-10:]),
        "peak_rss": peak_rss_bytes(),
        "cuda_peak": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "model": model.spec,
    }


@dataclass
class Run:
    started: float
    """When the models were loaded: the time before is the same for both variants."""
    step_times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def step_done(self) -> None:
        self.step_times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())


def train_myspinbot(
    load: Callable[[], Components],
    config: LoraConfig,
    images: list[Any],
    captions: list[str],
    device: torch.device,
) -> Run:
    components = load()
    started = time.perf_counter()
    trainer = LoraTrainer(components, config, device)
    del components  # the trainer frees the encoders once cached, if it holds the only reference
    trainer.prepare(images, captions)
    run = Run(started)
    result = trainer.train(lambda _: run.step_done())
    run.losses = result.loss_curve
    return run


def train_baseline(
    load: Callable[[], Components],
    config: LoraConfig,
    images: list[Any],
    captions: list[str],
    device: torch.device,
) -> Run:
    """The per-step work of diffusers' train_dreambooth_lora.py, nothing cached."""
    import numpy as np
    import torch.nn.functional as F
    from peft import LoraConfig as PeftLoraConfig
    from PIL import Image

    components = load()
    started = time.perf_counter()
    unet, vae, text_encoder = components.unet, components.vae, components.text_encoder
    tokenizer, scheduler = components.tokenizer, components.noise_scheduler
    resolution = int(config.resolution or 0)
    torch.manual_seed(int(config.seed or 0))
    unet.add_adapter(
        PeftLoraConfig(
            r=config.rank,
            lora_alpha=config.rank,
            init_lora_weights="gaussian",
            target_modules=list(config.target_modules),
        )
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    amp = None
    if device.type == "cuda":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    generator = torch.Generator().manual_seed(int(config.seed or 0))

    def transform(image: Any) -> torch.Tensor:  # Resize, CenterCrop, ToTensor, Normalize
        image = image.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 127.5 - 1

    run = Run(started)
    for _ in range(config.steps):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=generator).tolist()
        pixels = torch.stack([transform(images[i]) for i in idx]).to(device, vae.dtype)
        ids = tokenizer(
            [captions[i] for i in idx],
            padding="max_length",
            truncation=True,
            max_length=tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            encoder_hidden_states = text_encoder(ids.to(device), return_dict=False)[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=device
        )
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pred = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        run.losses.append(loss.item())
        run.step_done()
    return run


def print_table(
    console: Console, results: dict[str, dict[str, Any]], device: str, args: argparse.Namespace
) -> None:
    base, ours = results["baseline"], results["myspinbot"]
    memory = "cuda_peak" if device.startswith("cuda") else "peak_rss"
    table = Table(title=f"LoRA training, {base['model']}, {device}")
    columns = ("", "steps/s", "CPU ms/step", "prepare + train s", "peak memory", "loss, last 10")
    for column in columns:
        table.add_column(column, justify="right" if column else "left")
    for r in (base, ours):
        table.add_row(
            r["variant"],
            f"{r['steps_per_s']:.2f}",
            f"{r['cpu_ms_per_step']:.1f}",
            f"{r['total_s']:.1f}",
            mib(r[memory]),
            f"{r['final_loss']:.4f}",
        )
    table.add_row(
        "myspinbot / baseline",
        f"{ours['steps_per_s'] / base['steps_per_s']:.2f}x",
        f"{ours['cpu_ms_per_step'] / base['cpu_ms_per_step']:.2f}x",
        f"{ours['total_s'] / base['total_s']:.2f}x",
        f"{ours[memory] / base[memory]:.2f}x",
        "",
    )
    console.print(table)
    what = "torch.cuda.max_memory_allocated" if memory == "cuda_peak" else "the process's peak RSS"
    console.print(
        f"Medians of {args.repeats} runs each; steps/s and CPU time per step after "
        f"{args.warmup} warm-up steps; peak memory: {what}."
    )


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
