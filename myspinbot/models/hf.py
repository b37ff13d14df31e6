"""Hugging Face libraries as untyped modules.

diffusers, transformers and peft ship `py.typed` but leave most functions unannotated, so
under `mypy --strict` every call is an error; typing them `Any` in one place is narrower
than scattering ignores. Importing on first use also keeps `import myspinbot.models` light.
"""

from __future__ import annotations

import importlib
from typing import Any


def hf(module: str) -> Any:
    """`importlib.import_module(module)`, typed Any: `hf("diffusers").AutoencoderKL`."""
    return importlib.import_module(module)
