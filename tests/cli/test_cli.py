"""The `myspinbot` command line against a running platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import ROOT, RunningPlatform


def cli(
    p: RunningPlatform | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    if p is not None:
        env["MYSPINBOT_URL"] = p.url
    return subprocess.run(
        [sys.executable, "-m", "myspinbot", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_explains_the_commands() -> None:
    out = cli(None, "--help").stdout
    for command in ("up", "train", "generate", "jobs", "status", "watch", "cancel"):
        assert command in out
    assert "--port" in cli(None, "up", "--help").stdout


def test_generate_follows_the_job_to_its_result(platform: RunningPlatform) -> None:
    test_opts = json.dumps({"steps": 5, "sleep": 0.1, "echo": "from-cli"})
    result = cli(platform, "generate", "--narration", "Hello", "--stage", test_opts)
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout and "from-cli" in result.stdout
    assert "100%" in result.stdout


def test_jobs_status_and_cancel(platform: RunningPlatform) -> None:
    job_id = cli(
        platform,
        "generate",
        "--narration",
        "x",
        "--no-follow",
        "--stage",
        json.dumps({"steps": 300, "sleep": 0.1}),
    ).stdout.strip()
    assert len(job_id) == 32
    listed = cli(platform, "jobs", "--limit", "50")
    assert listed.returncode == 0 and job_id in listed.stdout
    shown = cli(platform, "status", job_id)
    assert json.loads(shown.stdout)["jobId"] == job_id
    assert cli(platform, "cancel", job_id).returncode == 0
    platform.wait_state(job_id, {"cancelled"})
    watched = cli(platform, "watch", job_id)
    assert watched.returncode == 1 and "cancelled" in watched.stderr


def test_errors_are_one_readable_line(platform: RunningPlatform) -> None:
    bad = cli(platform, "status", "nope")
    assert bad.returncode == 1 and "404" in bad.stderr and "Traceback" not in bad.stderr
    both = cli(platform, "generate", "--narration", "a", "--prompt", "b")
    assert both.returncode == 2 and "exactly one" in both.stderr
    down = cli(None, "jobs", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "myspinbot up" in down.stderr
