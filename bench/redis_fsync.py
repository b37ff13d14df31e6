"""What `appendfsync always` on the embedded Redis costs: submit and no-op job throughput.

`myspinbot up` runs its Redis with `appendfsync always` (every acknowledged write is on
disk before the reply, so a job that got its 202 survives a crash; docs/architecture.md).
This starts the platform twice in one run, with `everysec` (the baseline: the previous
default) and with `always`, and measures the same no-op workload on each:

    python bench/redis_fsync.py                    # 2 rounds x 300 jobs per policy
    python bench/redis_fsync.py --jobs 20 --rounds 1 --warmup 5   # smoke

Submits/s counts the 202s (first submit -> last 202); jobs/s is end to end (first submit ->
the last job completed); p50/p99 are the latencies of one submit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from platform_bench import (
    RunningPlatform,
    Throughput,
    exit_on_sigterm,
    measure_throughput,
    percentile,
)
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FUNCTIONS = [
    ROOT / "functions" / "status",
    ROOT / "functions" / "ws-relay",
    BENCH / "functions" / "noop",
]
POLICIES = ("everysec", "always")  # the first is the baseline


def measure(policy: str, args: argparse.Namespace, work: Path) -> Throughput:
    env = {"MYSPINBOT_REDIS_APPENDFSYNC": policy}
    with RunningPlatform(FUNCTIONS, work / policy, env=env) as platform:
        return asyncio.run(
            measure_throughput(platform, args.jobs, args.rounds, args.warmup, args.concurrency)
        )


def table(results: dict[str, Throughput], args: argparse.Namespace) -> Table:
    t = Table(
        title=f"Embedded Redis fsync policy: {args.rounds} x {args.jobs} no-op jobs, "
        f"{args.concurrency} concurrent submits (medians of the rounds)"
    )
    for col in (
        "appendfsync",
        "submits/s",
        "vs everysec",
        "submit p50 ms",
        "submit p99 ms",
        "jobs/s end to end",
        "vs everysec",
    ):
        t.add_column(col, justify="left" if col == "appendfsync" else "right")
    base_submit = base_jobs = 0.0
    for policy, res in results.items():
        submit = statistics.median(r.jobs / r.submit_seconds for r in res.rounds)
        jobs = statistics.median(r.jobs_per_s for r in res.rounds)
        lat = [x for r in res.rounds for x in r.submit_latencies_ms]
        if policy == POLICIES[0]:
            base_submit, base_jobs = submit, jobs
        t.add_row(
            policy,
            f"{submit:.0f}",
            f"{submit / base_submit:.2f}x",
            f"{percentile(lat, 50):.1f}",
            f"{percentile(lat, 99):.1f}",
            f"{jobs:.0f}",
            f"{jobs / base_jobs:.2f}x",
        )
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=300, help="jobs per measured round [300]")
    p.add_argument("--rounds", type=int, default=2, help="measured rounds per policy [2]")
    p.add_argument("--warmup", type=int, default=30, help="unmeasured jobs first [30]")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent submits [32]")
    args = p.parse_args()
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="myspinbot-fsyncbench-"))
    try:
        results = {policy: measure(policy, args, work) for policy in POLICIES}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console = Console(width=120)
    console.print(f"Machine: {os.cpu_count()} CPUs; load avg {os.getloadavg()[0]:.2f}")
    console.print(table(results, args))


if __name__ == "__main__":
    main()
