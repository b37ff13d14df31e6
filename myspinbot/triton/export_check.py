"""Keep the Triton repository in step with the configured base model.

`myspinbot up` calls `ensure_export` before starting the embedded tritonserver: a
repository without an export, or with one of another base model, is (re-)exported, so
the first run works with no extra command and a changed MYSPINBOT_BASE_MODEL is picked up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from myspinbot.models.loading import resolve_base_model
from myspinbot.settings import Settings
from myspinbot.triton.repository import read_export_info


def ensure_export(settings: Settings, repository: Path, say: Callable[[str], None]) -> None:
    info = read_export_info(repository)
    base = resolve_base_model(settings.base_model, settings.models_dir)
    if info is not None and info.model_hash == base.model_hash:
        return
    from myspinbot.imaging.export import export_repository

    why = "no exported models yet" if info is None else f"it holds {info.base_model}"
    say(f"  triton    exporting {base.spec} to ONNX into {repository} ({why})")
    result = export_repository(
        settings.base_model,
        repository,
        models_dir=settings.models_dir,
        device=settings.device,
        progress=lambda message: say(f"            {message}"),
    )
    say(f"  triton    exported in {result.seconds:.0f} s ({result.dtype})")
