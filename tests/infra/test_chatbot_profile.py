"""The `chatbot` compose profile: Ollama (GPU, model volume, a one-shot pull of the model
guided mode uses), Open WebUI behind Traefik with its own login, and the generate
service's guided mode pointed at that Ollama.

No Docker engine here: the project is rendered as `docker compose --env-file .env
--env-file infra/secrets/stack.env --profile chatbot config` renders it
(tests/infra/support.py: render_compose) and validated against the Compose
specification; then the generate function's own capability check runs with exactly
the rendered environment against FakeOllama (an LLM cannot run here), reached at the
address the rendered URL names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from myspinbot.generation.capabilities import generate_capabilities
from myspinbot.netutil import free_port
from myspinbot.settings import Settings
from tests.infra.support import (
    ENV_EXAMPLE,
    render_compose,
    run,
    split_volume,
    stack_env,
    tool,
    traefik_dynamic,
)
from tests.script.fake_ollama import FakeOllama, running

CHATBOT = {"ollama", "ollama-pull", "open-webui"}


def rendered(profiles: tuple[str, ...] = ("chatbot",), **env: str) -> dict[str, Any]:
    return render_compose({**stack_env(), **env}, profiles)


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the generate container builds them: from its environment alone
    (a variable listed without a value is passed only when the shell sets it)."""
    for key in [k for k in os.environ if k.startswith("MYSPINBOT_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        if key.startswith("MYSPINBOT_") and value is not None:
            monkeypatch.setenv(key, value)
    return Settings()


def test_the_profile_renders_ollama_and_open_webui_and_validates(tmp_path: Path) -> None:
    project = rendered()
    assert set(project["services"]) >= CHATBOT
    out = tmp_path / "chatbot.yml"
    out.write_text(yaml.safe_dump(project, sort_keys=False))
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the profile none of it starts, and nothing else needs it.
    assert not CHATBOT & set(rendered(profiles=())["services"])


def test_generate_points_guided_mode_at_the_profiles_ollama() -> None:
    services = rendered()["services"]
    env = services["generate"]["environment"]
    url = urlsplit(env["MYSPINBOT_OLLAMA_URL"])
    assert url.scheme == "http" and url.hostname == "ollama", env["MYSPINBOT_OLLAMA_URL"]
    assert str(url.port) in services["ollama"]["expose"]
    # The pull job fetches exactly the model generate asks for, into the server generate uses.
    pull = services["ollama-pull"]
    assert pull["entrypoint"] == ["ollama"]
    assert pull["command"] == ["pull", env["MYSPINBOT_OLLAMA_MODEL"]]
    assert urlsplit(pull["environment"]["OLLAMA_HOST"]).netloc == url.netloc
    assert pull["depends_on"] == {"ollama": {"condition": "service_healthy"}}
    assert pull["restart"] == "no"
    # Open WebUI chats with the same server.
    assert services["open-webui"]["environment"]["OLLAMA_BASE_URL"] == env["MYSPINBOT_OLLAMA_URL"]


def test_the_model_follows_env_and_defaults_to_the_settings_default() -> None:
    example = rendered()["services"]
    assert example["generate"]["environment"]["MYSPINBOT_OLLAMA_MODEL"] == (
        Settings.model_fields["ollama_model"].default
    )
    other = rendered(MYSPINBOT_OLLAMA_MODEL="qwen2.5:3b")["services"]
    assert other["generate"]["environment"]["MYSPINBOT_OLLAMA_MODEL"] == "qwen2.5:3b"
    assert other["ollama-pull"]["command"] == ["pull", "qwen2.5:3b"]
    # An Ollama elsewhere can still be named in .env.
    external = rendered(MYSPINBOT_OLLAMA_URL="http://gpu-box:11434")["services"]
    assert external["generate"]["environment"]["MYSPINBOT_OLLAMA_URL"] == "http://gpu-box:11434"
    assert "MYSPINBOT_OLLAMA_URL=\n" in ENV_EXAMPLE.read_text(), ".env.example keeps the default"


def test_ollama_has_the_gpu_a_model_volume_and_a_health_check() -> None:
    ollama = rendered()["services"]["ollama"]
    devices = ollama["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    mounts = dict(split_volume(v)[::-1] for v in ollama["volumes"])
    assert mounts["/root/.ollama"] == "ollama-models"
    assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    # Not published and not routed: only the internal network reaches it.
    assert "ports" not in ollama
    routed = {
        s["url"]
        for svc in traefik_dynamic()["http"]["services"].values()
        for s in svc["loadBalancer"]["servers"]
    }
    assert not any("ollama:" in u for u in routed)


def test_open_webui_is_behind_traefik_with_its_own_login_and_no_default_password() -> None:
    env_file = stack_env()
    webui = rendered()["services"]["open-webui"]
    env = webui["environment"]
    assert env["WEBUI_AUTH"] == "true" and env["ENABLE_SIGNUP"] == "false"
    # The admin exists from the first start, with the generated password: no
    # first-visitor-becomes-admin window; sessions are signed with a generated key.
    assert env["WEBUI_ADMIN_PASSWORD"] == env_file["OPEN_WEBUI_ADMIN_PASSWORD"]
    assert env["WEBUI_SECRET_KEY"] == env_file["OPEN_WEBUI_SECRET_KEY"]
    assert len(env["WEBUI_ADMIN_PASSWORD"]) >= 32
    routers = traefik_dynamic("myspinbot.local")["http"]["routers"]
    chat = routers["chat"]
    assert chat["rule"] == "Host(`chat.myspinbot.local`)"
    assert env["WEBUI_URL"] == "https://chat.myspinbot.local"
    servers = traefik_dynamic()["http"]["services"][chat["service"]]["loadBalancer"]["servers"]
    assert [s["url"] for s in servers] == ["http://open-webui:8080"]
    assert "8080" in webui["expose"] and "ports" not in webui


def test_generate_reports_guided_mode_from_the_rendered_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The generate function's own check, with the rendered environment. The compose
    host name `ollama` does not resolve here, so only the host:port is swapped for
    FakeOllama's (standing in for Ollama, which cannot run here)."""
    env = dict(rendered()["services"]["generate"]["environment"])
    model = env["MYSPINBOT_OLLAMA_MODEL"]
    with running(FakeOllama(models=[])) as fake:
        env["MYSPINBOT_OLLAMA_URL"] = fake.url
        settings = settings_from(env, monkeypatch)
        # Before ollama-pull has finished: unavailable, and the reason says what to do.
        guided = generate_capabilities(settings)["generate"]["modes"]["guided"]
        assert guided["available"] is False and f"ollama pull {model}" in guided["reason"]
        fake.models.append(model)  # what ollama-pull leaves on the server
        guided = generate_capabilities(settings)["generate"]["modes"]["guided"]
        assert guided == {"available": True}


def test_without_the_profile_guided_mode_is_unavailable_not_broken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same default URL with no Ollama behind it (here: a closed local port)."""
    env = dict(rendered(profiles=())["services"]["generate"]["environment"])
    assert urlsplit(env["MYSPINBOT_OLLAMA_URL"]).hostname == "ollama"
    env["MYSPINBOT_OLLAMA_URL"] = f"http://127.0.0.1:{free_port()}"
    caps = generate_capabilities(settings_from(env, monkeypatch))["generate"]
    assert caps["modes"]["guided"]["available"] is False
    assert caps["modes"]["guided"]["reason"]
    assert caps["modes"]["direct"]["available"] is True
