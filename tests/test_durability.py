"""Nothing accepted is lost, nothing completes twice: the platform end to end
(`myspinbot up` with status, ws-relay and tests/functions/durable, two replicas).

Issue 12's acceptance 2 (gateway killed between storing inputs and queueing),
3 (PostgreSQL away for longer than the old dead-letter window), 4 (a burst past
the backlog limit), 5 (a paused replica is fenced) and 6 (a dead-lettered job
retried by API and CLI; a training retry reuses its photos).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from myspinbot import keys
from myspinbot.db import JobHistory
from myspinbot.storage import ArtifactStore
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.support import FUNCTIONS, ROOT, RunningPlatform, pid_alive, wait_for
from tests.tcp_proxy import TcpProxy

DURABLE = ROOT / "tests" / "functions" / "durable"
BACKLOG_MAX = 20
FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def p(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    data = tmp_path_factory.mktemp("durable")
    platform = RunningPlatform(
        data,
        functions=[FUNCTIONS / "status", FUNCTIONS / "ws-relay", DURABLE],
        env={
            "MYSPINBOT_BACKLOG_MAX": str(BACKLOG_MAX),
            "MYSPINBOT_TEST_CRASH_BEFORE_QUEUE": str(data / "crash-the-gateway"),
            "MYSPINBOT_SUBMIT_ORPHAN_GRACE_S": "3",
        },
    ).start()
    yield platform
    assert platform.stop() == 0


@pytest.fixture(scope="module")
def r(p: RunningPlatform) -> redis.Redis:
    return redis.Redis.from_url(p.redis_url, decode_responses=True)


@pytest.fixture(scope="module")
def store(p: RunningPlatform) -> ArtifactStore:
    return p.store()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 120, 90)).save(buf, format="PNG")
    return buf.getvalue()


def train(p: RunningPlatform, name: str, key: str | None = None) -> httpx.Response:
    return p.post(
        "/api/train",
        files=[("images", ("face.png", png(), "image/png"))],
        data={"name": name},
        headers={"Idempotency-Key": key} if key else {},
    )


def runs(r: redis.Redis, job_id: str) -> list[list[str]]:
    return [entry.split() for entry in r.lrange(f"test:runs:{job_id}", 0, -1)]


def completions_recorded(p: RunningPlatform, job_id: str) -> int:
    evts = p.get(f"/api/jobs/{job_id}").json()["events"]
    return sum(e["kind"] == "state" and e["state"] == "completed" for e in evts)


def test_a_gateway_killed_before_queueing_leaves_no_phantom_job_and_no_orphans(
    p: RunningPlatform, r: redis.Redis, store: ArtifactStore
) -> None:
    owner = p.get("/api/me").json()["id"]  # Idempotency-Keys are per user
    (p.data_dir / "crash-the-gateway").touch()  # test hook: the next train submit dies
    with pytest.raises(httpx.TransportError):
        train(p, "after-a-crash", key="crash-1")
    # The key was never bound: nothing answers `202` for a job that does not exist.
    assert r.get(keys.idempotency("crash-1", owner)) is None
    (orphan,) = r.zrange(keys.SUBMITS_PENDING, 0, -1)
    assert store.list_keys(f"jobs/{orphan}/inputs/"), "the inputs were stored before the crash"

    wait_for(lambda: _answers(p), timeout=60, what="the supervisor to restart the gateway")
    again = train(p, "after-a-crash", key="crash-1")  # the client's retry, same key
    assert again.status_code == 202, again.text
    job_id = again.json()["jobId"]
    assert job_id != orphan
    final = p.wait_state(job_id, FINAL)
    assert final["state"] == "completed" and final["result"]["photoBytes"] == [len(png())]
    # Same key, different request: refused, with the job it names.
    clash = p.post(
        "/api/generate",
        json={"mode": "direct", "narration": "other", "stage": "{}"},
        headers={"Idempotency-Key": "crash-1"},
    )
    assert clash.status_code == 409 and "different request" in clash.json()["error"]

    wait_for(
        lambda: not store.list_keys(f"jobs/{orphan}/inputs/"),
        timeout=60,
        what="the sweeper to delete the abandoned inputs",
    )
    assert store.list_keys(f"jobs/{job_id}/inputs/"), "the queued job's inputs stay"
    assert r.zrange(keys.SUBMITS_PENDING, 0, -1) == []


def _answers(p: RunningPlatform) -> bool:
    try:
        return p.get("/livez").status_code == 200
    except httpx.TransportError:
        return False


def test_a_burst_past_the_backlog_limit_is_refused_not_trimmed(
    p: RunningPlatform, r: redis.Redis
) -> None:
    async def burst() -> list[httpx.Response]:
        body = {"mode": "direct", "narration": "x", "stage": json.dumps({"steps": 2, "sleep": 0.5})}
        limits = httpx.Limits(max_connections=100)
        async with p.async_client(timeout=60, limits=limits) as client:
            return list(
                await asyncio.gather(*(client.post("/api/generate", json=body) for _ in range(80)))
            )

    replies = asyncio.run(burst())
    codes = [resp.status_code for resp in replies]
    assert set(codes) == {202, 429}, codes
    refused = next(resp for resp in replies if resp.status_code == 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many jobs waiting" in refused.json()["error"]
    accepted = [resp.json()["jobId"] for resp in replies if resp.status_code == 202]
    assert len(accepted) >= BACKLOG_MAX
    for job_id in accepted:  # every accepted job ran to the end, once
        assert p.wait_state(job_id, FINAL, timeout=180)["state"] == "completed"
        assert [run[0] for run in runs(r, job_id)] == ["start", "end"]
    stream = keys.job_stream("generate")
    wait_for(
        lambda: r.xlen(stream) <= BACKLOG_MAX,
        what="the stream to shrink to what is not acknowledged",
    )


def _metric(metrics_port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    )


def _leases_lost(metrics_port: int) -> float:
    return _metric(metrics_port, "myspinbot_stream_leases_lost_total")


def test_a_paused_replica_cannot_complete_a_job_twice(
    p: RunningPlatform, r: redis.Redis, store: ArtifactStore
) -> None:
    job_id = p.submit({"steps": 30, "sleep": 0.1})
    first = wait_for(lambda: runs(r, job_id), what="the job to start")[0]
    paused = int(first[1])
    (replica,) = [c for c in p.children("durable") if c["pid"] == paused]
    wait_for(lambda: p.status(job_id)["progress"] > 5, what="the job to be under way")
    os.kill(paused, signal.SIGSTOP)  # GC pause, swap storm, a long C call...
    try:
        # Past the reclaim time (2 s here) the other replica takes the job over.
        wait_for(
            lambda: any(int(run[1]) != paused for run in runs(r, job_id)),
            what="the other replica to take the job over",
        )
        assert p.wait_state(job_id, FINAL, timeout=120)["state"] == "completed"
    finally:
        os.kill(paused, signal.SIGCONT)
    # Resumed, the paused run learns at its next report that it lost the job, and stops.
    wait_for(
        lambda: _leases_lost(replica["metricsPort"]) >= 1,
        what="the resumed replica to notice it lost the lease",
    )
    ends = [run for run in runs(r, job_id) if run[0] == "end"]
    assert len(ends) == 1 and int(ends[0][1]) != paused
    assert len(store.list_keys(f"jobs/{job_id}/results/")) == 1  # one S3 write of results
    assert completions_recorded(p, job_id) == 1
    assert pid_alive(paused)  # it lives on and keeps serving


def test_a_dead_lettered_job_retried_by_api_completes(p: RunningPlatform) -> None:
    job_id = p.submit({"fail": 3})  # fails every attempt the trigger allows (3)
    failed = p.wait_state(job_id, FINAL)
    assert failed["state"] == "failed" and "attempt 3" in failed["error"]
    letters = p.get("/api/dead-letters").json()["deadLetters"]
    mine = [d for d in letters if d["jobId"] == job_id]
    assert len(mine) == 1 and "scripted failure on attempt 3" in mine[0]["error"]

    resp = p.post(f"/api/jobs/{job_id}/retry")
    assert resp.status_code == 202, resp.text
    assert resp.json()["attempt"] == 4
    done = p.wait_state(job_id, FINAL)
    assert done["state"] == "completed" and done["attempt"] == 4
    assert job_id not in [d["jobId"] for d in p.get("/api/dead-letters").json()["deadLetters"]]
    evts = p.get(f"/api/jobs/{job_id}").json()["events"]
    states = [e["state"] for e in evts if e["kind"] != "progress"]
    assert states[-4:] == ["failed", "queued", "running", "completed"]  # history kept
    again = p.post(f"/api/jobs/{job_id}/retry")
    assert again.status_code == 409 and "only failed jobs" in again.json()["error"]


def test_a_training_retry_reuses_the_stored_photos(p: RunningPlatform) -> None:
    resp = train(p, "fail-first-round")
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["jobId"]
    assert p.wait_state(job_id, FINAL)["state"] == "failed"
    out = subprocess.run(
        [sys.executable, "-m", "myspinbot", "retry", job_id, "--url", p.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**p.cli_env(), "COLUMNS": "120"},
    )
    assert out.returncode == 0, out.stderr
    assert "attempt 3" in out.stdout and "completed" in out.stdout
    final = p.status(job_id)
    assert final["state"] == "completed"
    assert final["result"]["photoBytes"] == [len(png())]  # the photos uploaded the first time


# The relay used to dead-letter a job event after 20 failed deliveries (about 2.6 min).
OLD_DEAD_LETTER_TRIES = 20


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_schema_url()


def test_sql_away_longer_than_the_old_dead_letter_window_loses_no_final_state(
    pg_url: str, tmp_path: Path
) -> None:
    host_port = urlsplit(POSTGRES_URL).netloc.split("@")[-1]
    host, _, port = host_port.partition(":")
    proxy = TcpProxy(host, int(port or 5432)).start()
    proxied = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    platform = RunningPlatform(
        tmp_path / "data",
        functions=[FUNCTIONS / "status", FUNCTIONS / "ws-relay", DURABLE],
        # Retry SQL fast, so many more attempts than the old window fail in a short test.
        env={"MYSPINBOT_DATABASE_URL": proxied, "MYSPINBOT_HISTORY_RETRY_MAX_S": "0.05"},
    ).start()
    try:
        relay_port = platform.children("ws-relay")[0]["metricsPort"]
        jobs = [platform.submit({"steps": 2}) for _ in range(3)]
        for job_id in jobs:
            platform.wait_state(job_id, FINAL)
        proxy.stop()  # PostgreSQL is gone for the platform
        during = [platform.submit({"steps": 3, "sleep": 0.1}) for _ in range(10)]
        for job_id in during:  # live state keeps moving meanwhile
            assert platform.wait_state(job_id, FINAL)["state"] == "completed"
        wait_for(
            lambda: (
                _metric(relay_port, "myspinbot_relay_sql_failures_total") > OLD_DEAD_LETTER_TRIES
            ),
            timeout=120,
            what="more failed SQL writes than the old dead-letter window allowed",
        )
        assert _metric(relay_port, "myspinbot_relay_sql_backlog") > 0
        assert platform.get("/api/dead-letters").json()["deadLetters"] == []
        proxy.start()
        history = JobHistory(pg_url)
        try:

            def recorded() -> bool:
                finals = [history.get_job(j) for j in jobs + during]
                return all(j is not None and j.state.value == "completed" for j in finals)

            wait_for(recorded, timeout=120, what="every final state to reach SQL")
            for job_id in during:
                evts = [(e.kind.value, e.state.value) for e in history.job_events(job_id)]
                assert evts[0] == ("created", "queued") and evts[-1] == ("state", "completed")
        finally:
            history.close()
    finally:
        assert platform.stop() == 0
        proxy.stop()
