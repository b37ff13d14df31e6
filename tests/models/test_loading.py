"""Resolving a base model spec to a local directory, hashing it, loading its parts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from diffusers import DDPMScheduler

from myspinbot.errors import PermanentError
from myspinbot.models import loading, presets
from myspinbot.models.loading import (
    HASH_CACHE_FILE,
    ResolvedModel,
    load_components,
    model_hash,
    resolve_base_model,
)
from tests.models.support import one_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny(cache: Path) -> ResolvedModel:
    return resolve_base_model("tiny", cache)


def test_preset_is_built_once_then_reused(
    cache: Path, tiny: ResolvedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Path(tiny.path_or_id) == cache / "presets" / "tiny"
    assert (cache / "presets" / "tiny" / HASH_CACHE_FILE).is_file()

    def no_rebuild(*_: object, **__: object) -> Path:
        raise AssertionError("the cached preset was rebuilt")

    monkeypatch.setattr(presets, "build_preset", no_rebuild)
    monkeypatch.setattr(loading, "_file_sha256", no_rebuild)  # and not rehashed either
    assert resolve_base_model(None, cache) == tiny
    assert len(tiny.model_hash) == 64


def test_losing_a_concurrent_build_uses_the_winners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_build = presets.build_preset
    final = tmp_path / "presets" / "tiny"

    def build_while_another_process_publishes(name: str, dest: Path, seed: int = 0) -> Path:
        # The other process finishes first and renames its build into place.
        real_build(name, final, seed)
        (final / "built-by-the-other-process").touch()
        return real_build(name, dest, seed)

    monkeypatch.setattr(presets, "build_preset", build_while_another_process_publishes)
    resolved = resolve_base_model("tiny", tmp_path)
    assert Path(resolved.path_or_id) == final
    assert (final / "built-by-the-other-process").exists()  # ours did not replace theirs
    leftovers = [p.name for p in (tmp_path / "presets").iterdir() if p.name != ".tiny.lock"]
    assert leftovers == ["tiny"]


def test_processes_resolving_at_once_share_one_build(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from myspinbot.models.loading import resolve_base_model; "
        "print(resolve_base_model('tiny', Path(sys.argv[1])).model_hash)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    hashes = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(hashes) == 1
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == [".tiny.lock", "tiny"]


def test_leftovers_of_a_killed_build_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / "presets" / ".tiny.tmp-12345-deadbeef"
    (leftover / "unet").mkdir(parents=True)
    resolve_base_model("tiny", tmp_path)
    assert not leftover.exists()


def test_preset_of_an_older_recipe_is_rebuilt(tmp_path: Path, tiny: ResolvedModel) -> None:
    old = tmp_path / "presets" / "tiny"
    shutil.copytree(tiny.path_or_id, old)
    info = json.loads((old / presets.PRESET_INFO_FILE).read_text())
    (old / presets.PRESET_INFO_FILE).write_text(json.dumps({**info, "recipe_version": 0}))

    resolved = resolve_base_model("tiny", tmp_path)
    assert presets.read_preset_info(old) == {**info, "recipe_version": presets.RECIPE_VERSION}
    assert resolved.model_hash == tiny.model_hash
    assert not list((tmp_path / "presets").glob(".tiny.*-*"))  # no temporary or stale dirs


def test_local_directory_is_used_in_place_and_hash_follows_its_content(
    tmp_path: Path, tiny: ResolvedModel
) -> None:
    local = tmp_path / "my-model"
    shutil.copytree(tiny.path_or_id, local, ignore=shutil.ignore_patterns(HASH_CACHE_FILE))
    resolved = resolve_base_model(str(local), tmp_path / "cache")
    assert resolved.path_or_id == str(local)
    assert resolved.preset is None
    assert resolved.is_placeholder  # a copy of a preset is still random weights
    assert resolved.model_hash == tiny.model_hash
    assert (local / HASH_CACHE_FILE).is_file()

    config = local / "unet" / "config.json"
    config.write_text(config.read_text().replace('"norm_eps": 1e-05', '"norm_eps": 1e-06'))
    assert resolve_base_model(str(local), tmp_path / "cache").model_hash != tiny.model_hash


def test_hash_ignores_files_outside_the_pipeline_parts(tmp_path: Path, tiny: ResolvedModel) -> None:
    local = tmp_path / "m"
    shutil.copytree(tiny.path_or_id, local)
    (local / "README.md").write_text("notes")
    (local / "unet" / "notes.md").write_text("notes")
    assert model_hash(local, tmp_path / "h.json") == tiny.model_hash


def test_missing_or_invalid_directories_fail_permanently(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        resolve_base_model(str(tmp_path / "nope"), tmp_path)
    with pytest.raises(PermanentError, match="not a diffusers Stable Diffusion directory"):
        resolve_base_model(str(tmp_path), tmp_path)


def test_unknown_hub_id_fails_with_a_message_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No network here; offline mode makes the failure immediate instead of a DNS timeout.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PermanentError, match="'nobody/no-such-model'"):
        resolve_base_model("nobody/no-such-model", tmp_path)


def test_components_load_frozen_through_from_pretrained(tiny: ResolvedModel) -> None:
    components = load_components(tiny, "cpu")
    assert isinstance(components.noise_scheduler, DDPMScheduler)
    assert components.noise_scheduler.config.clip_sample is False  # SD 1.5's setting
    for model in (components.unet, components.vae, components.text_encoder):
        assert model.dtype == torch.float32
        assert not any(p.requires_grad for p in model.parameters())
    assert components.tokenizer.model_max_length == 77

    half = load_components(tiny, "cpu", dtype=torch.bfloat16)
    assert half.unet.dtype == torch.bfloat16 and half.text_encoder.dtype == torch.bfloat16
