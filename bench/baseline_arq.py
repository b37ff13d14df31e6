"""arq baseline: the benchmark's no-op job on arq (Redis), run by bench/jobs_throughput.py.

    python baseline_arq.py worker --redis-url URL --max-jobs M --poll-delay S
    python baseline_arq.py drive --redis-url URL --log-dir DIR --jobs N ...   # JSON on stdout

`drive` starts `--workers` worker processes, enqueues with `--concurrency`
concurrent `ArqRedis.enqueue_job` calls, and waits until arq's queue is empty
(arq removes a job from its queue in the same transaction that stores its
result, so an empty queue after the last enqueue means every result is stored).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

import redis
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name
from arq.worker import run_worker
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
from proc_cpu import CpuMeter

DONE_POLL_S = 0.005
DEFAULTS: dict[str, Any] = {"concurrency": 32, "max-jobs": 100, "poll-delay": 0.01}


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def _ready(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(READY_KEY)


class WorkerSettings:
    functions = [noop]
    on_startup = _ready


def worker(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--max-jobs", type=int, default=DEFAULTS["max-jobs"])
    p.add_argument("--poll-delay", type=float, default=DEFAULTS["poll-delay"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # arq logs every job at INFO
    run_worker(
        WorkerSettings,
        redis_settings=RedisSettings.from_dsn(args.redis_url),
        max_jobs=args.max_jobs,
        poll_delay=args.poll_delay,
    )


async def measure(pool: ArqRedis, jobs: int, concurrency: int) -> Round:
    todo = iter(range(jobs))

    async def submitter() -> None:
        for _ in todo:  # one shared iterator: each job is enqueued once
            await pool.enqueue_job("noop")

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    enqueued = time.perf_counter() - started
    while await pool.zcard(default_queue_name):
        await asyncio.sleep(DONE_POLL_S)
    return Round(jobs, time.perf_counter() - started, enqueued)


async def run_rounds(args: argparse.Namespace, report: Report, meter: CpuMeter) -> None:
    pool = await create_pool(RedisSettings.from_dsn(args.redis_url))
    try:
        await measure(pool, args.warmup, args.concurrency)
        meter.start()
        for _ in range(args.rounds):
            report.rounds.append(await measure(pool, args.jobs, args.concurrency))
        report.cpu_s = meter.stop()
        results = await pool.all_job_results()
        expected = args.warmup + args.rounds * args.jobs
        ok = sum(r.success for r in results)
        if ok != expected:
            raise RuntimeError(f"arq: {ok} successful results, expected {expected}")
    finally:
        await pool.aclose()


def drive(argv: list[str]) -> None:
    args = driver_args(argv, DEFAULTS)
    exit_on_sigterm()
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    argv_worker = [
        sys.executable,
        __file__,
        "worker",
        "--redis-url",
        args.redis_url,
        "--max-jobs",
        str(args.max_jobs),
        "--poll-delay",
        str(args.poll_delay),
    ]
    report = Report(
        "arq",
        {
            "workers": args.workers,
            "max_jobs": args.max_jobs,
            "poll_delay_s": args.poll_delay,
            "client_concurrency": args.concurrency,
            "hiredis": hiredis(),
        },
        versions=versions("arq", "redis"),
    )
    procs = start_workers([argv_worker] * args.workers, args.log_dir, "arq-worker")
    try:
        wait_ready(client, args.workers, procs)
        asyncio.run(run_rounds(args, report, cpu_meter(procs, client)))
    finally:
        stop_workers(procs)
    print(report.to_json())


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["--help"]
    {"worker": worker, "drive": drive}[command](rest)
