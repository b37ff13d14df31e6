"""What the generate function offers, as the API reports and enforces it, on a platform
with no LLM configured and an external Triton (MYSPINBOT_TRITON_URL)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from myspinbot import keys
from myspinbot.triton.server import EmbeddedTriton
from tests.support import FUNCTIONS, RunningPlatform


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, triton: EmbeddedTriton
) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / n for n in ("status", "ws-relay", "generate")]
    # Its repository API (the health check's model index) wants the admin key.
    env = {"MYSPINBOT_TRITON_URL": triton.url, "MYSPINBOT_TRITON_ADMIN_KEY": triton.admin_key}
    p = RunningPlatform(tmp_path_factory.mktemp("caps"), functions=functions, env=env)
    yield p.start()
    assert p.stop() == 0


def test_guided_without_an_llm_is_refused_up_front(platform: RunningPlatform) -> None:
    """Issue 5 acceptance 3: no LLM configured -> 4xx with a message, nothing queued."""
    resp = platform.get("/api/capabilities")
    assert resp.status_code == 200, resp.text
    caps = resp.json()["functions"]["generate"]["capabilities"]
    guided = caps["generate"]["modes"]["guided"]
    assert guided["available"] is False and "MYSPINBOT_OLLAMA_URL" in guided["reason"]

    resp = platform.post("/api/generate", json={"mode": "guided", "prompt": "the sea"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith("`guided` mode is not available: Guided mode needs")
    # Nothing queued: the gateway puts a job on its stream (with its `created` event, in
    # one transaction) before it answers, so the streams are the definite record; the
    # SQL history is written later by ws-relay and would prove nothing yet.
    client = redis.Redis.from_url(platform.redis_url, decode_responses=True)
    assert client.xlen(keys.job_stream("generate")) == 0
    created = [
        body
        for _, fields in client.xrange(keys.EVENTS)
        if (body := json.loads(fields["body"]))["kind"] == "created"
    ]
    assert created == []


def test_health_reports_the_external_triton_and_its_models(platform: RunningPlatform) -> None:
    """Issue 4 operations: /health tells whether Triton and every model are ready."""
    triton = platform.get("/health").json()["components"]["triton"]
    assert triton["status"] == "ok"
    assert triton["models"] == {"text_encoder": "READY", "unet": "READY", "vae_decoder": "READY"}
    # `up` did not start a second, embedded tritonserver.
    assert "triton_metrics" not in platform.state()["urls"]
