"""`myspinbot export`: a diffusers SD base model -> ONNX graphs in the Triton repository.

Three graphs, as Triton serves them: the CLIP text encoder, the UNet and the VAE decoder.
fp32 on a CPU, fp16 on a GPU (the graphs' inputs and outputs stay fp32 at Triton's
boundary; the model code casts). Each graph is checked against PyTorch on random inputs
before it replaces the previous export, within EXPORT_TOLERANCE.

The UNet's weights keep their module names as ONNX initializer names
(`unet.down_blocks.0...to_q.weight`): that is how a profile's LoRA finds the weights it
adapts, without a re-export.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from myspinbot.models.hf import hf
from myspinbot.models.loading import ResolvedModel, resolve_base_model
from myspinbot.triton import repository as repo
from myspinbot.triton.repository import MODELS, TEXT_ENCODER, UNET, VAE_DECODER

# Max abs difference between ONNX Runtime and PyTorch on the same random inputs, relative
# to the output's magnitude (max(1, max|y|)). fp32 graphs land near 1e-6; fp16 ones are
# compared against the fp32 PyTorch model, so they are allowed fp16's precision.
EXPORT_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
OPSET = 17
# Protobuf caps a file at 2 GiB: bigger graphs (SD 1.5's UNet in fp32) keep their
# weights in one external data file beside model.onnx.
EXTERNAL_DATA_BYTES = 1_500_000_000
UNET_PREFIX = "unet."

Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """The export failed its numerical check or could not be written."""


@dataclass(frozen=True)
class ExportResult:
    repository: Path
    base: ResolvedModel
    dtype: str
    max_abs_diff: dict[str, float]
    seconds: float


class _TextEncoder(torch.nn.Module):
    def __init__(self, text_encoder: Any) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=False)[0]  # type: ignore[no-any-return]


class _Unet(torch.nn.Module):
    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet  # the attribute name is the initializers' prefix: UNET_PREFIX

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]  # type: ignore[no-any-return]


class _VaeDecoder(torch.nn.Module):
    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent, return_dict=False)[0]  # type: ignore[no-any-return]


def export_repository(
    base_model: str | None,
    repository: Path,
    *,
    models_dir: Path,
    device: str | None = None,
    dtype: str | None = None,
    progress: Progress = lambda message: None,
) -> ExportResult:
    """Export `base_model` (preset, directory or hub id) into `repository`.

    `dtype` is the graphs' weight type: fp16 on a GPU and fp32 on a CPU unless given.
    """
    started = time.monotonic()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or ("fp16" if dev.type == "cuda" else "fp32")
    if dtype not in EXPORT_TOLERANCE:
        raise ExportError(f"dtype must be one of {', '.join(EXPORT_TOLERANCE)}, not {dtype!r}")
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    progress(f"resolving base model {base_model or 'tiny'}")
    base = resolve_base_model(base_model, models_dir)
    path = base.path_or_id
    diffusers, transformers = hf("diffusers"), hf("transformers")

    repository.mkdir(parents=True, exist_ok=True)
    _copy_model_code(repository)
    diffs: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=".export-", dir=repository) as tmp:
        staging = Path(tmp)
        progress("loading the text encoder")
        # Eager attention traces to plain ONNX ops; the math is the same as SDPA's.
        text_encoder = transformers.CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", attn_implementation="eager"
        )
        max_length = int(text_encoder.config.max_position_embeddings)
        ids = torch.randint(0, int(text_encoder.config.vocab_size), (2, max_length))
        diffs[TEXT_ENCODER] = _export(
            _TextEncoder(text_encoder), (ids,), staging / TEXT_ENCODER,
            inputs={"input_ids": {0: "batch"}},
            outputs={"last_hidden_state": {0: "batch"}},
            dev=dev, torch_dtype=torch_dtype, progress=progress,
        )  # fmt: skip
        hidden = int(text_encoder.config.hidden_size)
        del text_encoder

        progress("loading the UNet")
        unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        size = int(unet.config.sample_size)
        sample = torch.randn(2, int(unet.config.in_channels), size, size)
        timestep = torch.tensor([981.0, 1.0])
        context = torch.randn(2, max_length, hidden)
        spatial = {0: "batch", 2: "height", 3: "width"}
        diffs[UNET] = _export(
            _Unet(unet), (sample, timestep, context), staging / UNET,
            inputs={"sample": spatial, "timestep": {0: "batch"},
                    "encoder_hidden_states": {0: "batch"}},
            outputs={"out_sample": spatial},
            dev=dev, torch_dtype=torch_dtype, progress=progress,
        )  # fmt: skip
        lora_targets = _check_lora_targets(unet, staging / UNET / repo.ONNX_FILE)
        del unet

        progress("loading the VAE")
        vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae")
        latent = torch.randn(1, int(vae.config.latent_channels), size, size)
        diffs[VAE_DECODER] = _export(
            _VaeDecoder(vae), (latent,), staging / VAE_DECODER,
            inputs={"latent": spatial}, outputs={"image": spatial},
            dev=dev, torch_dtype=torch_dtype, progress=progress,
        )  # fmt: skip
        del vae

        for model in MODELS:
            _publish(staging / model, repository / model / "1")
    info = {
        "base_model": base.spec,
        "model_hash": base.model_hash,
        "preset": base.preset,
        "placeholder": base.is_placeholder,
        "native_resolution": base.native_resolution,
        "dtype": dtype,
        "exported_on": dev.type,
        "opset": OPSET,
        "tolerance": EXPORT_TOLERANCE[dtype],
        "max_abs_diff": diffs,
        "lora_targets": lora_targets,
        "lora_initializer_prefix": UNET_PREFIX,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (repository / repo.EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return ExportResult(repository, base, dtype, diffs, time.monotonic() - started)


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    out_dir: Path,
    *,
    inputs: dict[str, dict[int, str]],
    outputs: dict[str, dict[int, str]],
    dev: torch.device,
    torch_dtype: torch.dtype,
    progress: Progress,
) -> float:
    """Export one graph to out_dir/model.onnx; returns its max abs difference to PyTorch."""
    name = out_dir.name
    module = module.eval()
    with torch.no_grad():
        expected = module(*args).float().numpy()
    progress(f"exporting {name} to ONNX")
    module = module.to(dev, torch_dtype)
    dev_args = tuple(a.to(dev, torch_dtype) if a.is_floating_point() else a.to(dev) for a in args)
    out_dir.mkdir(parents=True)
    path = out_dir / repo.ONNX_FILE
    with torch.no_grad():
        torch.onnx.export(
            module,
            dev_args,
            str(path),
            dynamo=False,  # the TorchScript exporter keeps parameter names on initializers
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={**inputs, **outputs},
            opset_version=OPSET,
            # Folding would merge each Linear weight into a transposed, renamed constant;
            # ONNX Runtime folds it at load time instead, after a LoRA override.
            do_constant_folding=False,
        )
    module.to("cpu", torch.float32)
    _externalise_if_large(path)

    progress(f"checking {name} against PyTorch")
    actual = _run_onnx(path, {n: a.numpy() for n, a in zip(inputs, args, strict=True)})
    diff = float(np.max(np.abs(actual - expected)))
    dtype = "fp16" if torch_dtype == torch.float16 else "fp32"
    allowed = EXPORT_TOLERANCE[dtype] * max(1.0, float(np.max(np.abs(expected))))
    if not diff <= allowed:
        raise ExportError(
            f"{name}: ONNX output differs from PyTorch by {diff:.3g} (allowed {allowed:.3g})"
        )
    return diff


def _run_onnx(path: Path, feed: dict[str, NDArray[Any]]) -> NDArray[Any]:
    import onnxruntime as ort

    # The provider Triton will run it on where there is one: fp16 graphs are for GPUs.
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                 if p in ort.get_available_providers()]  # fmt: skip
    session = ort.InferenceSession(str(path), providers=providers)
    types = {i.name: i.type for i in session.get_inputs()}
    cast = {
        n: a.astype(np.float16) if types[n] == "tensor(float16)" else a for n, a in feed.items()
    }
    return np.asarray(session.run(None, cast)[0], dtype=np.float32)


def _externalise_if_large(path: Path) -> None:
    files = [p for p in path.parent.iterdir() if p.is_file()]
    if sum(p.stat().st_size for p in files) < EXTERNAL_DATA_BYTES:
        return
    import onnx

    model = onnx.load(str(path))
    for p in files:
        p.unlink()
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location=repo.ONNX_FILE + ".data",
    )  # fmt: skip


def _check_lora_targets(unet: Any, onnx_file: Path) -> int:
    """Every LoRA-adaptable weight must be an initializer of the same name in the graph."""
    import onnx

    from myspinbot.training.lora import TARGET_MODULES

    wanted = {
        f"{UNET_PREFIX}{name}.weight"
        for name, _ in unet.named_modules()
        if any(name.endswith("." + target) for target in TARGET_MODULES)
    }
    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    missing = wanted - {t.name for t in graph.initializer}
    if missing:
        raise ExportError(
            f"the exported UNet lacks {len(missing)} LoRA target weights "
            f"(e.g. {sorted(missing)[0]}): LoRA models could not be built on it"
        )
    return len(wanted)


def _copy_model_code(repository: Path) -> None:
    """A repository outside this checkout gets the committed configs and model code."""
    source = repo.CHECKOUT_REPOSITORY
    if repository.resolve() == source.resolve():
        return
    for model in MODELS:
        (repository / model / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / model / "config.pbtxt", repository / model / "config.pbtxt")
        shutil.copyfile(repo.model_code(source), repository / model / "1" / repo.MODEL_CODE)


def _publish(staged: Path, version_dir: Path) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    for old in version_dir.glob(repo.ONNX_FILE + "*"):
        old.unlink()
    for new in staged.iterdir():
        new.replace(version_dir / new.name)
