"""From a clean clone, `myspinbot up` (what ./scripts/up runs) brings the platform up
with its defaults: every function in functions/, embedded Redis, S3, SQLite and Triton."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from myspinbot.netutil import free_port
from tests.support import ROOT, wait_for


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    return dest


def test_up_from_a_clean_clone(clone: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    env["PYTHONPATH"] = str(clone)  # the clone's code, the installed dependencies
    where = subprocess.run(
        [sys.executable, "-c", "import myspinbot; print(myspinbot.__file__)"],
        env=env,
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(clone))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(clone / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "myspinbot", "up", "--port", str(port)],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (clone / "up.log").read_text()
            try:
                return httpx.get(url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=120, what="the platform to be healthy", interval=0.3)
        # The first start made the owner account; its token is where the CLI looks for it.
        token_file = clone / ".myspinbot" / "secrets" / "owner.token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        auth = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        health = httpx.get(url + "/health", headers=auth).json()
        assert set(health["components"]["functions"]) == {"train", "generate", "status", "ws-relay"}
        # No base model configured: the platform says plainly what that means.
        assert any("renders noise, not people" in n for n in health.get("notices", []))
        assert (clone / ".myspinbot" / "myspinbot.db").exists()
        assert (clone / ".myspinbot" / "redis").is_dir() and (clone / ".myspinbot" / "s3").is_dir()

        # The embedded tritonserver came up on the export `up` made into the clone.
        assert health["components"]["triton"]["status"] == "ok"
        assert (clone / "triton-models" / "unet" / "1" / "model.onnx").exists()

        # No profile: the base model renders the portrait through Triton; a real MP4 ends it.
        resp = httpx.post(
            url + "/api/generate", json={"mode": "direct", "narration": "Hi."}, headers=auth
        )
        assert resp.status_code == 202
        job_id = resp.json()["jobId"]
        final = wait_for(
            lambda: (
                (s := httpx.get(f"{url}/api/status/{job_id}", headers=auth).json())["state"]
                in {"completed", "failed"}
                and s
            ),
            timeout=180,
            what="the job to end",
        )
        assert final["state"] == "completed", final
        assert final["result"]["portrait"] == "render"
        assert httpx.get(final["result"]["video"]["url"]).content[4:8] == b"ftyp"
        caps = httpx.get(url + "/api/capabilities", headers=auth).json()["functions"]
        assert caps["generate"]["capabilities"]["generate"]["available"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0
    out = (clone / "up.log").read_text()
    assert "Ready." in out and "Stopped." in out
    assert f"Sign in: http://127.0.0.1:{port}/?token=msb_" in out
    assert "renders noise, not people" in " ".join(out.split())
