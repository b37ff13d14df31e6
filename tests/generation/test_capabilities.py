"""What the generate function offers, before any job runs (FakeOllama stands in for the
LLM, which cannot run here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from myspinbot.generation import capabilities
from myspinbot.generation.capabilities import generate_capabilities, keep_fresh
from myspinbot.generation.pipeline import default_portrait
from myspinbot.settings import Settings
from tests.script.fake_ollama import FakeOllama, running
from tests.support import wait_for


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with running(FakeOllama(models=[])) as server:
        yield server


def test_random_weight_presets_animate_the_photo_and_real_models_render(tmp_path: Path) -> None:
    for preset in (None, "tiny", "sd15-arch"):
        assert default_portrait(Settings(base_model=preset)) == "photo"
    real = Settings(base_model=str(tmp_path / "stable-diffusion-v1-5"))
    assert default_portrait(real) == "render"
    assert default_portrait(Settings(base_model="runwayml/stable-diffusion-v1-5")) == "render"
    # Without a profile there is no photo to animate: the base model renders the scene.
    assert default_portrait(Settings(base_model="tiny"), has_profile=False) == "render"


def test_render_needs_triton_and_guided_needs_an_llm() -> None:
    caps = generate_capabilities(Settings(triton_url=None, ollama_url=None))["generate"]
    assert caps["portraits"]["render"]["available"] is False
    assert caps["modes"]["guided"]["available"] is False
    assert "MYSPINBOT_OLLAMA_URL" in caps["modes"]["guided"]["reason"]
    assert caps["modes"]["direct"]["available"] is True


def test_guided_mode_becomes_available_when_the_llm_gets_its_model(
    fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capabilities, "REFRESH_S", 0.05)
    settings = Settings(ollama_url=fake.url, ollama_model="tiny-test-model:1b")
    user_data = SimpleNamespace(capabilities=generate_capabilities(settings))

    def guided() -> dict[str, object]:
        return dict(user_data.capabilities["generate"]["modes"]["guided"])

    assert guided()["available"] is False and "ollama pull" in str(guided()["reason"])
    assert keep_fresh(user_data, settings) is not None
    fake.models.append("tiny-test-model:1b")
    wait_for(lambda: guided()["available"], timeout=10, what="guided mode available")


def test_nothing_to_refresh_without_an_llm() -> None:
    assert keep_fresh(SimpleNamespace(), Settings(ollama_url=None)) is None
