"""A Piper voice as a Triton model, loaded through the model-control API when first used.

The voice is the user's configuration, not part of the repository, so it is sent to
Triton the way per-profile LoRA UNets are (triton/lora.py): `piper_model.py`, the voice's
`.onnx` and a config, as override files of a model named after the voice's digest. That
works the same for the embedded tritonserver and for a Triton elsewhere (Compose,
Kubernetes) that cannot see this machine's files. A model that vanished (Triton
restarted) is loaded again on its next use.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from myspinbot.triton.client import TritonClient

MODEL_PREFIX = "tts-piper-"
MODEL_CODE = Path(__file__).with_name("piper_model.py")
_LOAD_LOCK = threading.Lock()


def voice_model_name(digest: str) -> str:
    return MODEL_PREFIX + digest[:16]


def voice_model_config(name: str, speakers: int) -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [
        {"name": "phoneme_ids", "data_type": "TYPE_INT64", "dims": [-1]},
        {"name": "scales", "data_type": "TYPE_FP32", "dims": [3]},
    ]
    if speakers > 1:
        inputs.append({"name": "speaker_id", "data_type": "TYPE_INT64", "dims": [1]})
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": 0,
        "input": inputs,
        "output": [{"name": "audio", "data_type": "TYPE_FP32", "dims": [-1]}],
        # As the image models: one instance per GPU where there are GPUs, else the CPU.
        "instance_group": [{"count": 1, "kind": "KIND_AUTO"}],
    }


def ensure_voice_model(triton: TritonClient, onnx_path: Path, digest: str, speakers: int) -> str:
    """The voice's model name in `triton`, loading it first when it is not ready there."""
    name = voice_model_name(digest)
    if triton.model_ready(name):
        return name
    with _LOAD_LOCK:  # two jobs of one replica: one load
        if not triton.model_ready(name):
            files = {
                "file:1/model.py": MODEL_CODE.read_bytes(),
                "file:1/model.onnx": onnx_path.read_bytes(),
            }
            triton.load_model(name, voice_model_config(name, speakers), files)
    return name
