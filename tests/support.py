"""Running the real platform (`myspinbot up`) from tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

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
        self.token = ""  # the owner's (admin) API token, from <data dir>/secrets/owner.token

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
        self.token = (self.data_dir / "secrets" / "owner.token").read_text().strip()
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"`myspinbot up` exited:\n{self.log.read_text()[-4000:]}")
        try:
            healthy = httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
        # `up` writes the owner's token before it starts the gateway: a healthy answer
        # without it came from some other process on this port.
        return healthy and (self.data_dir / "secrets" / "owner.token").exists()

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

    def login_links(self) -> list[str]:
        """Every `Sign in: http://...?token=...` link `up` printed, oldest first."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.findall(r"Sign in: (http://\S+\?token=\S+)", text)

    # --- the API (as the owner, an admin, unless headers= says otherwise) -----------------------
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        """Headers to act as another user: `platform.get(path, headers=platform.bearer(t))`."""
        return {"Authorization": f"Bearer {token}"}

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        """Environment for `myspinbot` CLI commands against this platform."""
        return {**os.environ, "MYSPINBOT_URL": self.url, "MYSPINBOT_TOKEN": token or self.token}

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, **{"timeout": 30, **kw})

    def async_client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, **{"timeout": 30, **kw})

    def ws(self, query: str = "", token: str | None = None, **kw: Any) -> ClientConnection:
        """A WebSocket to /ws (with `query`, e.g. "?jobId=..."), signed in as the owner."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return connect(self.ws_url + query, additional_headers=headers, **kw)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        kw["headers"] = {**self.headers, **(kw.get("headers") or {})}
        return httpx.request(method, self.url + path, **{"timeout": 30, **kw})

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    @property
    def metrics_token(self) -> str:
        return (self.data_dir / "secrets" / "metrics.token").read_text().strip()

    def metrics(self) -> str:
        """The gateway's /metrics, scraped with the metrics token as Prometheus does."""
        headers = {"Authorization": f"Bearer {self.metrics_token}"}
        resp = httpx.get(self.url + "/metrics", headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.text

    def sign_in(self, token: str | None = None) -> str:
        """POST /api/session as the UI does; returns the session cookie's value."""
        resp = httpx.post(
            self.url + "/api/session", json={"token": token or self.token}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        return str(resp.cookies["myspinbot_session"])

    def add_user(self, name: str, role: str = "member") -> str:
        """A new user (through the API, as the owner); returns their API token."""
        resp = self.post("/api/users", json={"name": name, "role": role})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["token"])

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
