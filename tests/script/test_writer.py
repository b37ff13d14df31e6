"""Guided mode against FakeOllama (tests/script/fake_ollama.py), which stands in for an LLM."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from myspinbot.netutil import free_port
from myspinbot.script import LlmUnavailable, Script, ScriptError, guided_status, write_script
from myspinbot.settings import Settings
from tests.script.fake_ollama import FakeOllama, HttpError, running

NOT_CONFIGURED = "Guided mode needs an LLM: set MYSPINBOT_OLLAMA_URL to an Ollama server"

GOOD = {"stage": "A sunny bakery at dawn.", "narration": "We bake fresh bread every morning."}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with running(FakeOllama(models=["tiny-test-model:1b"])) as server:
        yield server


def settings_for(fake: FakeOllama) -> Settings:
    return Settings(ollama_url=fake.url, ollama_model="tiny-test-model:1b", ollama_temperature=0.3)


def test_guided_script_is_exactly_what_the_model_wrote(fake: FakeOllama) -> None:
    fake.replies = [json.dumps(GOOD)]
    script = write_script("An ad for my bakery", settings_for(fake), target_seconds=30)
    assert script == Script(**GOOD)

    [request] = fake.requests
    assert request["model"] == "tiny-test-model:1b"
    assert request["format"] == "json"
    assert request["stream"] is False
    assert request["options"]["temperature"] == 0.3
    assert "An ad for my bakery" in request["prompt"]
    # 30 s at 150 wpm is 75 words; the model is told the limit.
    assert "75" in request["prompt"]


def test_one_bad_reply_is_retried_with_the_reason(fake: FakeOllama) -> None:
    fake.replies = ["Sure! Here is your script: {", json.dumps(GOOD)]
    script = write_script("An ad for my bakery", settings_for(fake), target_seconds=30)
    assert script.narration == GOOD["narration"]
    assert len(fake.requests) == 2
    retry = fake.requests[1]["prompt"]
    assert "not valid JSON" in retry and "Sure! Here is your script" in retry


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("not json at all", "not valid JSON"),
        (json.dumps(["a", "list"]), "not an object"),
        (json.dumps({"stage": "A room."}), "`narration` is missing"),
        (json.dumps({"stage": "A room.", "narration": "   "}), "`narration` is empty"),
        (json.dumps({"narration": ["two", "paragraphs"]}), "`narration` must be a string"),
        (json.dumps({"narration": "word " * 200}), "200 words; it must have at most 75"),
    ],
)
def test_two_bad_replies_are_a_readable_script_error(
    fake: FakeOllama, reply: str, problem: str
) -> None:
    fake.replies = [reply, reply]
    with pytest.raises(ScriptError) as exc:
        write_script("An ad for my bakery", settings_for(fake), target_seconds=30)
    assert not isinstance(exc.value, LlmUnavailable)
    message = str(exc.value)
    assert message.startswith("The language model returned an unusable script twice: ")
    assert problem in message
    assert len(fake.requests) == 2


def test_extra_keys_and_blank_stage_are_tolerated(fake: FakeOllama) -> None:
    fake.replies = [json.dumps({"title": "Bread", "stage": "", "narration": " Hello. "})]
    script = write_script("Say hello", settings_for(fake), target_seconds=10)
    assert script == Script(stage=None, narration="Hello.")


def test_no_llm_configured() -> None:
    settings = Settings(ollama_url=None)
    assert guided_status(settings) == (False, NOT_CONFIGURED)
    with pytest.raises(LlmUnavailable, match=NOT_CONFIGURED):
        write_script("An ad for my bakery", settings, target_seconds=30)


def test_unreachable_llm_is_a_readable_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(ollama_url=url)
    available, reason = guided_status(settings)
    assert not available
    assert reason is not None and f"Cannot reach the Ollama server at {url}" in reason
    with pytest.raises(LlmUnavailable, match=f"Cannot reach the Ollama server at {url}"):
        write_script("An ad for my bakery", settings, target_seconds=30)


def test_guided_status_checks_the_model_is_there(fake: FakeOllama) -> None:
    assert guided_status(settings_for(fake)) == (True, None)
    # A bare host:port, as Ollama's own OLLAMA_HOST takes it, works too.
    bare = settings_for(fake).model_copy(update={"ollama_url": fake.url.removeprefix("http://")})
    assert guided_status(bare) == (True, None)

    missing = Settings(ollama_url=fake.url, ollama_model="llama3.1:70b")
    available, reason = guided_status(missing)
    assert not available
    assert reason is not None and "`ollama pull llama3.1:70b`" in reason


def test_model_refused_by_the_server_is_llm_unavailable(fake: FakeOllama) -> None:
    fake.replies = [HttpError(404, "model 'tiny-test-model:1b' not found")]
    with pytest.raises(LlmUnavailable) as exc:
        write_script("An ad for my bakery", settings_for(fake), target_seconds=30)
    message = str(exc.value)
    assert "HTTP 404: model 'tiny-test-model:1b' not found" in message
    assert "ollama pull tiny-test-model:1b" in message
    assert len(fake.requests) == 1  # a refusal is not retried


def test_empty_prompt_is_refused_without_asking_the_model(fake: FakeOllama) -> None:
    with pytest.raises(ScriptError, match="needs a prompt"):
        write_script("   ", settings_for(fake), target_seconds=30)
    assert fake.requests == []
