"""Triton python-backend model that speaks with a Piper voice (a VITS graph in ONNX Runtime).

Not imported by the platform: `myspinbot.triton.voices` sends this file to Triton, with
the voice's `.onnx` and a config, through the model-control API (as per-profile LoRA
UNets are loaded), so the voice runs where the image models run: a GPU instance on a GPU
server, the embedded CPU server otherwise. The python backend, not Triton's onnxruntime
backend, for the same reason as the image models (triton-models/README.md): the embedded
tritonserver has only the python backend.

One request is one sentence: `phoneme_ids` (INT64 [n], the voice's ids with pads, BOS
and EOS already in place) and `scales` (FP32 [3]: noise, length, noise_w), optionally
`speaker_id` (INT64 [1]) for a multi-speaker voice. The answer is `audio` (FP32 [samples]
at the voice's sample rate). Sentences are not batched together: VITS output lengths
differ per item and the graph does not say where a padded item's audio ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_FILE = "model.onnx"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        model_dir = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        # As for the image models: idle worker threads must not spin on a shared CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = int(os.environ.get("MYSPINBOT_ORT_THREADS", "0") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
        providers: list[Any] = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(
            str(model_dir / ONNX_FILE), options, providers=providers
        )
        self.has_sid = any(i.name == "sid" for i in self.session.get_inputs())
        self.output = self.session.get_outputs()[0].name

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                audio = self._speak(request)
            except Exception as exc:  # one bad sentence must not fail the others
                error = pb_utils.TritonError(f"the voice could not speak: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensor = pb_utils.Tensor("audio", audio)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def _speak(self, request: Any) -> npt.NDArray[np.float32]:
        ids = pb_utils.get_input_tensor_by_name(request, "phoneme_ids").as_numpy()
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        scales = pb_utils.get_input_tensor_by_name(request, "scales").as_numpy()
        feed = {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": np.asarray(scales, dtype=np.float32).reshape(3),
        }
        if self.has_sid:
            sid = pb_utils.get_input_tensor_by_name(request, "speaker_id")
            speaker = 0 if sid is None else int(sid.as_numpy().reshape(-1)[0])
            feed["sid"] = np.array([speaker], dtype=np.int64)
        (audio,) = self.session.run([self.output], feed)
        return np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(-1))
