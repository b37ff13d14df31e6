"""Celery baseline: the benchmark's no-op job on Celery (Redis broker and result backend).

    python -m celery -A baseline_celery worker ...                          # started by drive
    python baseline_celery.py drive --redis-url URL --log-dir DIR --jobs N ...   # JSON on stdout

`drive` starts `--workers` worker nodes (prefork pool of `--pool-size`),
enqueues with `task.delay()` and waits with `ResultSet.join_native()`, which
for the Redis backend listens on the results' pub/sub channels (no polling).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import redis
from baseline_common import (
    READY_KEY,
    Report,
    Round,
    cpu_meter,
    driver_args,
    exit_on_sigterm,
    hiredis,
    start_workers,
    stop_workers,
    versions,
    wait_ready,
)
from celery import Celery
from celery.result import ResultSet
from celery.signals import worker_ready

URL_ENV = "BENCH_REDIS_URL"
RESULT_TIMEOUT_S = 600
DEFAULTS: dict[str, Any] = {"pool-size": 2, "prefetch-multiplier": 4}

app = Celery("bench")  # celery ships no type hints: its decorators are ignored below


def configure(url: str) -> None:
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "4")),
    )


configure(os.environ.get(URL_ENV, "redis://127.0.0.1:6379/15"))


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    return None


@worker_ready.connect  # type: ignore[untyped-decorator]
def _ready(**_: Any) -> None:
    redis.Redis.from_url(app.conf.broker_url).incr(READY_KEY)


def measure(jobs: int) -> Round:
    started = time.perf_counter()
    results = [noop.delay() for _ in range(jobs)]
    enqueued = time.perf_counter() - started
    ResultSet(results).join_native(timeout=RESULT_TIMEOUT_S, propagate=True)
    return Round(jobs, time.perf_counter() - started, enqueued)


def worker_argv(index: int, pool_size: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "baseline_celery",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(pool_size),
        "--loglevel",
        "WARNING",
        "--hostname",
        f"bench{index}@%h",
        # Cluster chatter only (no effect on the task path); the usual production flags.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def drive(argv: list[str]) -> None:
    args = driver_args(argv, DEFAULTS)
    exit_on_sigterm()
    os.environ[URL_ENV] = args.redis_url
    os.environ["BENCH_CELERY_PREFETCH"] = str(args.prefetch_multiplier)
    configure(args.redis_url)
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    report = Report(
        "celery",
        {
            "workers": args.workers,
            "pool": "prefork",
            "pool_size": args.pool_size,
            "prefetch_multiplier": args.prefetch_multiplier,
            "client_concurrency": 1,
            "hiredis": hiredis(),
        },
        versions=versions("celery", "kombu", "redis"),
    )
    argvs = [worker_argv(i, args.pool_size) for i in range(args.workers)]
    procs = start_workers(argvs, args.log_dir, "celery-worker")
    try:
        wait_ready(client, args.workers, procs)
        measure(args.warmup)
        meter = cpu_meter(procs, client)
        meter.start()
        report.rounds.extend(measure(args.jobs) for _ in range(args.rounds))
        report.cpu_s = meter.stop()
    finally:
        stop_workers(procs)
    print(report.to_json())


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["--help"]
    {"drive": drive}[command](rest)
