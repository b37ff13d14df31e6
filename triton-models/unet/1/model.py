"""Triton python-backend model that runs an exported ONNX graph in ONNX Runtime.

One file serves every model in this repository (text_encoder and vae_decoder link to it):
the config's inputs and outputs name the ONNX graph's, so the code only batches.

Why the python backend and not Triton's onnxruntime backend: the tritonserver that the
`nvidia-pytriton` wheel ships (the embedded, CPU-only server) has only the python
backend. Running ONNX Runtime from Python keeps one repository that loads in that server
and in NVIDIA's Triton image alike, and gives us a place to apply a profile's LoRA.

A per-profile LoRA model (`unet-lora-<profile>`) is this same file, loaded by the client
through Triton's model-control API with the LoRA file and a config whose parameters name
the base model. Its LoRA is fused into the adapted weights of an in-memory copy of the
base graph (the other weights stay in the base's files), so a profile costs one UNet
session, never a re-export. The server finds the base model's ONNX file through
MYSPINBOT_TRITON_REPOSITORY (an override-loaded model lives in a temporary directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_FILE = "model.onnx"
LORA_DOWN, LORA_UP = "::down", "::up"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_dir = Path(args["model_repository"]) / args["model_version"]
        onnx_path = self._onnx_path(params)

        options = ort.SessionOptions()
        # Busy-waiting worker threads steal the CPU from the other models' instances (and,
        # on a small shared machine, from everything else); measured in bench/README.md.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = int(os.environ.get("MYSPINBOT_ORT_THREADS", "0") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
        model: str | bytes = str(onnx_path)
        if params.get("lora_file"):
            model = with_lora(onnx_path, self.model_dir / params["lora_file"])
            # The graph now comes from memory; its external weights stay beside the base.
            options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(onnx_path.parent)
            )

        providers: list[Any] = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(model, options, providers=providers)

        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        self.inputs = [(i["name"], graph_inputs[i["name"]]) for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def _onnx_path(self, params: dict[str, str]) -> Path:
        base = params.get("base_model")
        if not base:
            return self.model_dir / ONNX_FILE
        repository = os.environ.get("MYSPINBOT_TRITON_REPOSITORY")
        if not repository:
            raise pb_utils.TritonModelException(
                "MYSPINBOT_TRITON_REPOSITORY is not set in tritonserver's environment: a LoRA "
                f"model needs it to find its base model {base!r}"
            )
        return Path(repository) / base / "1" / ONNX_FILE

    def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands us several requests: run them as one batch, then split.
        sizes: list[int] = []
        columns: dict[str, list[np.ndarray]] = {name: [] for name, _ in self.inputs}
        for request in requests:
            for name, meta in self.inputs:
                array = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                columns[name].append(_fit(array, meta))
            sizes.append(len(columns[self.inputs[0][0]][-1]))
        feed = {name: np.concatenate(parts) for name, parts in columns.items()}
        results = self.session.run(self.outputs, feed)

        responses = []
        start = 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + size], np.float32))
                for name, out in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses


def _fit(array: np.ndarray, meta: Any) -> np.ndarray:
    """Triton's batched per-item shape [1] for a graph input of shape [batch] (the UNet's
    timestep): drop the trailing 1. Cast to the graph's dtype (fp16 on a GPU export)."""
    if len(array.shape) == len(meta.shape) + 1 and array.shape[-1] == 1:
        array = array.reshape(array.shape[:-1])
    dtype = np.float16 if meta.type == "tensor(float16)" else None
    return array.astype(dtype) if dtype is not None and array.dtype != dtype else array


def with_lora(onnx_path: Path, lora_path: Path) -> bytes:
    """The base graph with W + up @ down in place of every weight the LoRA file adapts.

    The file holds, per ONNX initializer name, `<name>::down` (rank x in) and `<name>::up`
    (out x rank, already multiplied by the LoRA scale alpha / rank). Only the adapted
    tensors are read and rewritten: a 2 GB+ UNet keeps its other weights in its external
    data file, which the session reads from disk as for the base model.
    """
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    lora = load_file(str(lora_path))
    names = {key[: -len(LORA_DOWN)] for key in lora if key.endswith(LORA_DOWN)}
    model = onnx.load(str(onnx_path), load_external_data=False)
    found = set()
    for tensor in model.graph.initializer:
        if tensor.name not in names:
            continue
        base = numpy_helper.to_array(tensor, base_dir=str(onnx_path.parent))
        up = lora[tensor.name + LORA_UP].astype(np.float32)
        delta = up @ lora[tensor.name + LORA_DOWN].astype(np.float32)
        if delta.shape != base.shape:
            raise pb_utils.TritonModelException(
                f"LoRA weight {tensor.name!r} has shape {delta.shape}, the model's {base.shape}"
            )
        fused = (base.astype(np.float32) + delta).astype(base.dtype)
        tensor.CopyFrom(numpy_helper.from_array(fused, tensor.name))
        found.add(tensor.name)
    missing = names - found
    if missing:
        raise pb_utils.TritonModelException(
            f"the LoRA adapts {len(missing)} weights the base model does not have, e.g. "
            f"{sorted(missing)[0]!r}: it was trained on another base model"
        )
    return model.SerializeToString()
