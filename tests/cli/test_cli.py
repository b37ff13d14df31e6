"""The `myspinbot` command line against a running platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from myspinbot.netutil import free_port
from myspinbot.platform.supervisor import up_argv
from tests.support import (
    FUNCTIONS,
    ROOT,
    TEST_TRITON_REPOSITORY,
    RunningPlatform,
    pid_alive,
    wait_for,
)


def cli(
    p: RunningPlatform | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    if p is not None:
        env["MYSPINBOT_URL"] = p.url
        env["MYSPINBOT_TOKEN"] = p.token
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


def test_ctrl_c_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    """The children run in their own sessions: a Ctrl-C before the platform is ready must
    still stop every one of them, and `up` exits cleanly."""
    data = tmp_path / "data"
    argv = up_argv(free_port(), data, [FUNCTIONS / "status", FUNCTIONS / "ws-relay"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    env["MYSPINBOT_TRITON_REPOSITORY"] = str(TEST_TRITON_REPOSITORY)
    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    state = data / "run" / "platform.json"
    # Written once the children are started, before the platform is healthy.
    wait_for(state.exists, timeout=120, what="the children to start", interval=0.02)
    pids = [c["pid"] for c in json.loads(state.read_text())["children"]]
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, (tmp_path / "up.log").read_text()
        for pid in pids:
            wait_for(lambda pid=pid: not pid_alive(pid), timeout=10, what=f"process {pid} to end")
    finally:  # a failure must not leave the platform running for the rest of the suite
        for pid in [proc.pid, *pids]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_failed_start_up_step_is_one_readable_error(tmp_path: Path) -> None:
    """The ONNX export runs in a child process (the supervisor stays small); when it fails,
    `up` says why, stops the servers it had started, and exits 1."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    env["MYSPINBOT_TRITON_REPOSITORY"] = str(tmp_path / "triton-models")
    env["MYSPINBOT_BASE_MODEL"] = str(tmp_path / "no-such-model")
    argv = up_argv(free_port(), data, [FUNCTIONS / "generate"])
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "start-up step `export` failed" in out and "no-such-model" in out
    left = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and _cwd_in(Path("/proc") / pid, data)
    ]
    assert not left, f"processes left running in {data}: {left}"


def test_a_function_yaml_the_runtime_refuses_stops_what_was_started(tmp_path: Path) -> None:
    """A bad function.yaml (here a stream trigger where Nuclio would refuse it) is found after
    Redis and S3 are up: `up` says what is wrong, stops them, and exits 1."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "handler.py").write_text("def handler(context, event):\n    return None\n")
    (bad / "function.yaml").write_text(
        "apiVersion: nuclio.io/v1\nkind: NuclioFunction\nmetadata:\n  name: bad\n"
        "spec:\n  handler: handler:handler\n  triggers:\n    jobs:\n"
        "      kind: redis-stream\n      attributes:\n        stream: jobs.bad\n"
        "        consumerGroup: bad\n"
    )
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    argv = up_argv(free_port(), data, [bad])
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "redis-stream" in out and "Traceback" not in out, out
    left = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and _cwd_in(Path("/proc") / pid, data)
    ]
    assert not left, f"processes left running in {data}: {left}"


def _cwd_in(proc: Path, data: Path) -> bool:
    try:
        return Path(os.readlink(proc / "cwd")).is_relative_to(data)
    except OSError:
        return False
