"""Function replicas started the way Nuclio starts them (tests/functions/nuclio_shim.py)
join the platform as ours do: they register (gateway /health and /api/capabilities),
consume their streams in the process that runs the handler, and drain on Nuclio's
termination signal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from myspinbot import datadir, keys
from tests.functions.nuclio_processor import NuclioWorker
from tests.support import FUNCTIONS, SCRIPTED, RunningPlatform, wait_for


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`myspinbot up` with only status and ws-relay: job functions come from Nuclio."""
    p = RunningPlatform(
        tmp_path_factory.mktemp("platform"),
        functions=[FUNCTIONS / "status", FUNCTIONS / "ws-relay"],
    ).start()
    yield p
    assert p.stop() == 0


def nuclio_worker(
    platform: RunningPlatform, function_dir: Path, work: Path, pod: str
) -> NuclioWorker:
    state = platform.state()["urls"]
    env = {
        **platform.env,
        # The embedded servers' generated credentials (the state file hides the password).
        "MYSPINBOT_REDIS_URL": platform.redis_url,
        "MYSPINBOT_S3_ENDPOINT": state["s3"],
        "MYSPINBOT_S3_ACCESS_KEY": platform.secret(datadir.S3_ACCESS_KEY),
        "MYSPINBOT_S3_SECRET_KEY": platform.secret(datadir.S3_SECRET_KEY),
        "MYSPINBOT_DATA_DIR": str(platform.data_dir.resolve()),  # its SQLite history
        "MYSPINBOT_INTERNAL_TOKEN": internal_token(platform),
    }
    return NuclioWorker(function_dir, work, env, pod)


def internal_token(platform: RunningPlatform) -> str:
    return (platform.data_dir / "secrets" / "internal.token").read_text().strip()


def functions(platform: RunningPlatform) -> dict[str, dict[str, object]]:
    return dict(platform.get("/api/capabilities").json()["functions"])


def test_a_job_function_started_by_nuclio_registers_and_runs_jobs(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    worker = nuclio_worker(platform, SCRIPTED, tmp_path, pod="scripted-5d8f7-x2x9q").start()
    try:
        wait_for(lambda: "scripted" in functions(platform), what="registration", timeout=60)
        caps = functions(platform)["scripted"]
        assert caps["replicas"] == 1 and caps["capabilities"]["generate"]["modes"] == ["direct"]
        health = platform.get("/health").json()
        assert health["components"]["functions"]["scripted"] == {"status": "ok", "replicas": 1}
        r = redis.Redis.from_url(platform.redis_url, decode_responses=True)
        info = json.loads(r.hget(keys.FUNCTIONS, "scripted-scripted-5d8f7-x2x9q") or "{}")
        assert info["runner"] == "nuclio" and info["triggers"]["generate"]["kind"] == "redis-stream"
        # The stream consumer runs in the Nuclio worker's process and finishes the job.
        job_id = platform.submit({"steps": 2, "echo": "via-nuclio"})
        done = platform.wait_state(job_id, {"completed", "failed"}, timeout=60)
        assert done["state"] == "completed" and done["result"]["echo"] == "via-nuclio"
        runs = r.lrange(f"test:runs:{job_id}", 0, -1)
        assert runs and all(str(worker.proc.pid) in run for run in runs)  # type: ignore[union-attr]
        # Nuclio's termination signal drains the replica; it deregisters and exits 0.
        assert worker.terminate() == 0
        assert not r.hexists(keys.FUNCTIONS, "scripted-scripted-5d8f7-x2x9q")
    finally:
        worker.close()


def test_generate_started_by_nuclio_publishes_its_capabilities_and_refuses_http(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    worker = nuclio_worker(platform, FUNCTIONS / "generate", tmp_path, pod="generate-0").start()
    try:
        wait_for(lambda: "generate" in functions(platform), what="registration", timeout=60)
        caps = functions(platform)["generate"]["capabilities"]
        assert "modes" in caps["generate"]  # what generate's init_context computed
        health = platform.get("/health").json()
        assert health["components"]["functions"]["generate"]["replicas"] == 1
        # Nuclio's default HTTP trigger only hosts the process: a job cannot come in that way.
        resp = worker.call(b'{"id": "x", "type": "generate"}', "application/json; charset=utf-8")
        assert resp["status_code"] == 404 and "stream" in resp["body"]
        assert worker.terminate() == 0
    finally:
        worker.close()


def test_status_started_by_nuclio_answers_and_registers(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    worker = nuclio_worker(platform, FUNCTIONS / "status", tmp_path, pod="status-0").start()
    try:
        wait_for(
            lambda: functions(platform)["status"]["replicas"] == 2,  # ours and Nuclio's
            what="the Nuclio status replica to register",
            timeout=60,
        )
        auth = {"Authorization": f"Bearer {internal_token(platform)}"}
        resp = worker.call(b"", "", path="/jobs", method="GET", headers=auth)
        assert resp["status_code"] == 200 and json.loads(resp["body"])["total"] >= 0
        missing = worker.call(b"", "", path="/status/nope", method="GET", headers=auth)
        assert missing["status_code"] == 404
        # Only the platform may ask (the gateway sends the internal token).
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = worker.call(b"", "", path="/jobs", method="GET", headers=headers)
            assert refused["status_code"] == 401, refused
        assert worker.terminate() == 0
    finally:
        worker.close()
