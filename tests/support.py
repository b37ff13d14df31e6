"""Running the real platform (`myspinbot up`) from tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from myspinbot import datadir
from myspinbot.netutil import free_port
from myspinbot.platform.supervisor import up_argv
from myspinbot.storage import ArtifactStore

ROOT = Path(__file__).resolve().parents[1]
SCRIPTED = ROOT / "tests" / "functions" / "scripted"
FUNCTIONS = ROOT / "functions"
TEST_TRITON_REPOSITORY = Path(tempfile.gettempdir()) / f"myspinbot-test-triton-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(
    cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class RunningPlatform:
    """`myspinbot up` in a subprocess, on its own port and data dir."""

    def __init__(
        self, data_dir: Path, functions: list[Path] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.functions = (
            functions
            if functions is not None
            else [FUNCTIONS / "status", FUNCTIONS / "ws-relay", SCRIPTED]
        )
        self.env = {
            **os.environ,
            "MYSPINBOT_RECLAIM_IDLE_S": "2",
            # Never the checkout's triton-models/: a developer's export of a real model
            # stays untouched, and every platform of this test run shares one tiny export.
            "MYSPINBOT_TRITON_REPOSITORY": str(TEST_TRITON_REPOSITORY),
            **(env or {}),
        }
        for var in (
            "MYSPINBOT_REDIS_URL",
            "MYSPINBOT_S3_ENDPOINT",
            "MYSPINBOT_DATABASE_URL",
            "MYSPINBOT_TRITON_URL",
            "MYSPINBOT_BASE_MODEL",
        ):
            if env is None or var not in env:
                self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "up.log"

    def start(self, timeout: float = 120) -> RunningPlatform:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = up_argv(self.port, self.data_dir, list(self.functions))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        try:
            wait_for(
                self._healthy, timeout=timeout, what="the platform to be healthy", interval=0.3
            )
        except AssertionError:
            self.stop()
            raise AssertionError(
                f"platform did not start:\n{self.log.read_text()[-4000:]}"
            ) from None
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"`myspinbot up` exited:\n{self.log.read_text()[-4000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    # --- introspection ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "run" / "platform.json").read_text())

    def children(self, function: str) -> list[dict[str, Any]]:
        return [c for c in self.state()["children"] if c.get("function") == function]

    @property
    def redis_url(self) -> str:
        """The embedded Redis with its password (the state file shows it as ***)."""
        url = str(self.state()["urls"]["redis"])
        return url.replace(":***@", f":{self.secret(datadir.REDIS_PASSWORD)}@", 1)

    def secret(self, name: str) -> str:
        """A secret `up` generated into <data_dir>/secrets/ (myspinbot/datadir.py)."""
        return (self.data_dir / datadir.SECRETS_DIR / name).read_text().strip()

    def store(self) -> ArtifactStore:
        """The embedded S3's bucket, with the keys `up` generated for it."""
        return ArtifactStore(
            self.state()["urls"]["s3"],
            "myspinbot",
            self.secret(datadir.S3_ACCESS_KEY),
            self.secret(datadir.S3_SECRET_KEY),
        )

    # --- the API ------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kw)

    def submit(self, test: dict[str, Any] | None = None, **body: Any) -> str:
        payload = {
            "mode": "direct",
            "narration": "Hello there.",
            "stage": json.dumps(test or {}),  # the scripted function's instructions
            **body,
        }
        resp = self.post("/api/generate", json=payload)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["jobId"])

    def status(self, job_id: str) -> dict[str, Any]:
        resp = self.get(f"/api/status/{job_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait_state(self, job_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            last = self.status(job_id)
            return last["state"] in states

        try:
            wait_for(check, timeout=timeout, what=f"job {job_id} to be {states}", interval=0.1)
        except AssertionError:
            raise AssertionError(f"job {job_id} stuck: {last}") from None
        return last
