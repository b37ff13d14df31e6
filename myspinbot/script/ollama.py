"""Talking to an Ollama server: one non-streamed generation, and a quick reachability check.

Every failure becomes LlmUnavailable with a message that names the server and says what
to check; the caller never sees an httpx exception.
"""

from __future__ import annotations

from typing import Any

import httpx

from myspinbot.script.errors import LlmUnavailable
from myspinbot.settings import Settings

NOT_CONFIGURED = "Guided mode needs an LLM: set MYSPINBOT_OLLAMA_URL to an Ollama server"

# The status check runs while a person waits for a page or a form: it must answer fast.
STATUS_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 10.0

ERROR_BODY_CHARS = 300


def base_url(settings: Settings) -> str:
    """The configured server's base URL; LlmUnavailable when none is configured."""
    url = (settings.ollama_url or "").strip().rstrip("/")
    if not url:
        raise LlmUnavailable(NOT_CONFIGURED)
    # Ollama's own OLLAMA_HOST accepts a bare host:port; so do we.
    if "://" not in url:
        url = "http://" + url
    return url


def generate(settings: Settings, *, prompt: str, system: str) -> str:
    """POST /api/generate in JSON mode, not streamed; returns the model's `response` text."""
    url = base_url(settings)
    body = {
        "model": settings.ollama_model,
        "prompt": prompt,
        "system": system,
        "stream": False,
        # Constrains decoding to valid JSON; the shape is still ours to check.
        "format": "json",
        "options": {"temperature": settings.ollama_temperature},
    }
    reply = _request(
        "POST", url, "/api/generate", settings.ollama_model, settings.ollama_timeout_s, body
    )
    text = reply.get("response")
    if not isinstance(text, str):
        raise LlmUnavailable(
            f"The server at {url} answered /api/generate without a `response` text; "
            "check that MYSPINBOT_OLLAMA_URL points at an Ollama server."
        )
    return text


def check_available(settings: Settings) -> None:
    """Raise LlmUnavailable unless the server answers and has the configured model."""
    url = base_url(settings)
    reply = _request("GET", url, "/api/tags", settings.ollama_model, STATUS_TIMEOUT_S)
    models = reply.get("models")
    if not isinstance(models, list):
        return  # an unfamiliar listing: the generation itself will tell
    names = {m.get("name") for m in models if isinstance(m, dict)}
    names |= {m.get("model") for m in models if isinstance(m, dict)}
    wanted = settings.ollama_model
    # Ollama fills in the ":latest" tag when a name has none.
    if wanted not in names and f"{wanted}:latest" not in names:
        raise LlmUnavailable(
            f"The Ollama server at {url} does not have the model `{wanted}`: run "
            f"`ollama pull {wanted}` there, or set MYSPINBOT_OLLAMA_MODEL to one it has."
        )


def _request(
    method: str, server: str, path: str, model: str, timeout: float, json: Any = None
) -> dict[str, Any]:
    """One request; its JSON object reply, or LlmUnavailable saying what went wrong."""
    try:
        # Without streaming, Ollama sends nothing until the whole reply is written, so the
        # read timeout is the generation's; connecting to a live server is quick.
        limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S))
        response = httpx.request(method, server + path, json=json, timeout=limits)
    except httpx.TimeoutException:
        raise LlmUnavailable(
            f"The Ollama server at {server} did not answer within {timeout:g} s."
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise LlmUnavailable(
            f"Cannot reach the Ollama server at {server} ({reason}); "
            "check that it is running and that MYSPINBOT_OLLAMA_URL is right."
        ) from None
    if response.status_code != 200:
        raise LlmUnavailable(_http_error_message(server, response, model))
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise LlmUnavailable(
            f"The server at {server} did not answer with JSON; "
            "check that MYSPINBOT_OLLAMA_URL points at an Ollama server."
        )
    return payload


def _http_error_message(server: str, response: httpx.Response, model: str) -> str:
    # Ollama explains a refusal in {"error": "..."}; anything else is shown as text.
    try:
        detail = response.json().get("error")
    except (ValueError, AttributeError):
        detail = None
    if not isinstance(detail, str) or not detail:
        detail = response.text.strip()[:ERROR_BODY_CHARS] or response.reason_phrase
    message = f"The Ollama server at {server} refused the request (HTTP {response.status_code}: "
    message += f"{detail})"
    if response.status_code == 404 and "model" in detail and "not found" in detail:
        message += f"; run `ollama pull {model}` there, or set MYSPINBOT_OLLAMA_MODEL"
    return message + "."
