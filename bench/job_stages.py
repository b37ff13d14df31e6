"""Where a no-op job's time goes in MySpinBot: per-stage latencies and CPU per process.

    python bench/job_stages.py [--jobs 1000] [--concurrency 32] [--http-client raw|httpx]

Submits no-op jobs like bench/jobs_throughput.py, then rebuilds each job's
timeline from what the platform already records: the producers' `ts` in each
event, the id of the event on the global events stream (Redis time of the
XADD) and the id of its copy on the fanout stream (Redis time when ws-relay
applied it); plus the client's own send/202 times. All clocks are this
machine's; stream ids have millisecond resolution. CPU time per process comes
from /proc over the measured jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from http_clients import CLIENTS, Submitter, make_submitter
from platform_bench import (
    COMPLETED_FIELD,
    NOOP_BODY,
    RunningPlatform,
    exit_on_sigterm,
    job_counter,
    percentile,
    read_fanout,
    stream_id_ms,
    wait_completed,
)
from proc_cpu import CpuMeter
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CORE_FUNCTIONS = [ROOT / "functions" / "status", ROOT / "functions" / "ws-relay"]
WARMUP_JOBS = 20

# (label, from mark, to mark); the marks of each job are filled in below.
STAGES = [
    ("client send -> gateway builds `created`", "send", "created.ts"),
    ("gateway: `created` built -> XADDed", "created.ts", "created.xadd"),
    ("ws-relay: `created` XADDed -> applied", "created.xadd", "created.applied"),
    ("gateway: `created` applied -> client has 202", "created.applied", "accepted"),
    ("noop: job XADDed -> handler starts (`running`)", "created.xadd", "running.ts"),
    ("noop: handler `running` -> `completed`", "running.ts", "completed.ts"),
    ("ws-relay: `completed` reported -> applied", "completed.ts", "completed.applied"),
    ("total: client send -> `completed` applied", "send", "completed.applied"),
    ("HTTP submit (client view)", "send", "accepted"),
]


@dataclass
class Timeline:
    marks: dict[str, float] = field(default_factory=dict)  # seconds since the epoch


@dataclass
class Measurement:
    timelines: list[Timeline]
    seconds: float
    cpu: dict[str, float]  # process -> CPU seconds used during the measured jobs


# --- timelines -------------------------------------------------------------------------------
async def submit_all(submitter: Submitter, jobs: int, concurrency: int) -> dict[str, Timeline]:
    timelines: dict[str, Timeline] = {}
    todo = iter(range(jobs))

    async def submit_some() -> None:
        for _ in todo:
            sent = time.time()
            job_id = await submitter.submit(NOOP_BODY)
            timelines[job_id] = Timeline({"send": sent, "accepted": time.time()})

    await asyncio.gather(*(submit_some() for _ in range(concurrency)))
    return timelines


async def add_applied_marks(client: aioredis.Redis, timelines: dict[str, Timeline]) -> None:
    """Marks from the fanout stream: what ws-relay applied, and when."""
    for fanout_id, job_id, ev in await read_fanout(client):
        timeline = timelines.get(job_id)
        if timeline is None or ev["kind"] == "progress":
            continue
        name = "created" if ev["kind"] == "created" else ev["state"]
        timeline.marks[f"{name}.ts"] = float(ev["ts"])
        timeline.marks[f"{name}.xadd"] = stream_id_ms(ev["eventId"]) / 1000
        timeline.marks[f"{name}.applied"] = stream_id_ms(fanout_id) / 1000


# --- measuring -------------------------------------------------------------------------------
async def measure(
    platform: RunningPlatform, jobs: int, concurrency: int, http_client: str
) -> Measurement:
    client = aioredis.Redis.from_url(platform.redis_url, decode_responses=True)
    submitter = make_submitter(http_client, platform.url, concurrency, platform.token)
    try:
        warm = await job_counter(client, COMPLETED_FIELD) + WARMUP_JOBS
        await submit_all(submitter, WARMUP_JOBS, concurrency)
        await wait_completed(client, warm)
        meter = CpuMeter({f"client ({http_client})": [os.getpid()], **platform.processes()})
        meter.start()
        started = time.perf_counter()
        timelines = await submit_all(submitter, jobs, concurrency)
        finished = await wait_completed(client, warm + jobs)
        cpu = meter.stop()
        await add_applied_marks(client, timelines)
    finally:
        await submitter.aclose()
        await client.aclose()
    return Measurement(list(timelines.values()), finished - started, cpu)


# --- report ----------------------------------------------------------------------------------
def stage_table(timelines: list[Timeline]) -> Table:
    t = Table(title=f"Per-job stages ({len(timelines)} jobs), ms")
    t.add_column("stage")
    for col in ("mean", "p50", "p90", "p99", "max"):
        t.add_column(col, justify="right")
    for name, start, end in STAGES:
        values = [
            (tl.marks[end] - tl.marks[start]) * 1000
            for tl in timelines
            if start in tl.marks and end in tl.marks
        ]
        if values:
            t.add_row(
                name,
                f"{statistics.fmean(values):.1f}",
                *(f"{percentile(values, q):.1f}" for q in (50, 90, 99)),
                f"{max(values):.1f}",
            )
    return t


def cpu_table(m: Measurement) -> Table:
    jobs = len(m.timelines)
    t = Table(
        title=f"CPU per process: {jobs} jobs in {m.seconds:.2f} s "
        f"({jobs / m.seconds:.0f} jobs/s, {os.cpu_count()} CPUs)"
    )
    t.add_column("process")
    for col in ("CPU ms / job", "% of one core"):
        t.add_column(col, justify="right")
    for name, used in sorted(m.cpu.items(), key=lambda kv: -kv[1]):
        t.add_row(name, f"{used / jobs * 1000:.2f}", f"{used / m.seconds * 100:.0f}%")
    total = sum(m.cpu.values())
    t.add_row("total", f"{total / jobs * 1000:.2f}", f"{total / m.seconds * 100:.0f}%")
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--noop-function", type=Path, default=BENCH / "functions" / "noop")
    p.add_argument("--http-client", choices=CLIENTS, default="raw")
    args = p.parse_args()
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="myspinbot-jobsbench-"))
    try:
        with RunningPlatform([*CORE_FUNCTIONS, args.noop_function], work) as platform:
            m = asyncio.run(measure(platform, args.jobs, args.concurrency, args.http_client))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console = Console(width=110)
    console.print(stage_table(m.timelines))
    console.print(cpu_table(m))


if __name__ == "__main__":
    main()
