"""What the arq and Celery baseline drivers share.

These modules run in the baseline interpreter (`bench/.venv`, see README): arq
pins redis-py < 6, which the platform's own environment must not be downgraded
to, so they import neither `myspinbot` nor anything from the main venv.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
from proc_cpu import CpuMeter, with_descendants

BENCH_DIR = Path(__file__).resolve().parent
READY_KEY = "bench:workers:ready"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


@dataclass
class Round:
    jobs: int
    seconds: float  # first enqueue -> every result stored
    enqueue_seconds: float  # first enqueue -> last enqueue returned

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds


@dataclass
class Report:
    system: str
    config: dict[str, Any]
    rounds: list[Round] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process group, measured rounds

    def to_json(self) -> str:
        data = asdict(self)
        for r, raw in zip(self.rounds, data["rounds"], strict=True):
            raw["jobs_per_s"] = r.jobs_per_s
        jobs = sum(r.jobs for r in self.rounds)
        data["cpu_ms_per_job"] = {k: v / jobs * 1000 for k, v in self.cpu_s.items()}
        return json.dumps(data)


def driver_args(argv: Sequence[str] | None, extra: dict[str, Any]) -> argparse.Namespace:
    """Arguments of `python baseline_X.py drive ...` (the main benchmark passes them)."""
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--jobs", type=int, default=500)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--log-dir", type=Path, required=True)
    for name, default in extra.items():
        p.add_argument(f"--{name}", type=type(default), default=default)
    return p.parse_args(argv)


def versions(*packages: str) -> dict[str, str]:
    return {p: metadata.version(p) for p in packages}


def hiredis() -> bool:
    """Whether redis-py parses replies with hiredis (C) here; arq depends on it."""
    from redis.utils import HIREDIS_AVAILABLE

    return bool(HIREDIS_AVAILABLE)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the workers."""

    def handler(*_: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)


def start_workers(
    argvs: list[list[str]], log_dir: Path, name: str
) -> list[subprocess.Popen[bytes]]:
    """One process per argv, logging to `<log_dir>/<name>-<i>.log`."""
    procs = []
    env = {**os.environ, "PYTHONPATH": str(BENCH_DIR)}
    for i, argv in enumerate(argvs):
        with open(log_dir / f"{name}-{i}.log", "ab") as log:
            procs.append(
                subprocess.Popen(argv, env=env, cwd=BENCH_DIR, stdout=log, stderr=subprocess.STDOUT)
            )
    return procs


def wait_ready(client: redis.Redis, count: int, procs: list[subprocess.Popen[bytes]]) -> None:
    """Workers INCR READY_KEY once they consume; wait for all of them."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while int(client.get(READY_KEY) or 0) < count:
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"baseline worker exited while starting: {dead}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"baseline workers not ready after {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_meter(procs: list[subprocess.Popen[bytes]], client: redis.Redis) -> CpuMeter:
    """CPU of this client, the workers (with their pools) and the redis-server."""
    workers = [pid for p in procs for pid in with_descendants(p.pid)]
    redis_pid = int(client.info("server")["process_id"])
    return CpuMeter({"client": [os.getpid()], "workers": workers, "redis-server": [redis_pid]})
