"""Job throughput and progress latency of MySpinBot, against arq and Celery on the same machine.

    . .venv/bin/activate
    python bench/jobs_throughput.py                 # full run (see bench/README.md)
    python bench/jobs_throughput.py --quick         # smoke run
    python bench/jobs_throughput.py --json out.json

Three measurements, all in this run:
1. MySpinBot: N no-op jobs, HTTP submit -> stream -> function -> completed.
2. arq and Celery doing the same no-op job on their own redis-server
   (run by bench/baseline_*.py in the baseline interpreter, bench/.venv).
3. Progress events to many WebSocket clients: report-to-receive latency.
A benchmark, not a test: it prints numbers and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as pyplatform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from http_clients import CLIENTS
from platform_bench import (
    LatencyResult,
    RunningPlatform,
    exit_on_sigterm,
    measure_latency,
    measure_throughput,
)
from redis.utils import HIREDIS_AVAILABLE
from rich.console import Console
from rich.table import Table

from myspinbot.redisserver import EmbeddedRedis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CORE_FUNCTIONS = [ROOT / "functions" / "status", ROOT / "functions" / "ws-relay"]
BASELINE_PYTHON = BENCH / ".venv" / "bin" / "python"
BASELINE_TIMEOUT_S = 900
TARGET_RATIO = 1.5
TARGET_P99_MS = 20.0
PARAMS = ("jobs", "rounds", "warmup", "concurrency", "http_client", "clients", "ws_jobs", "ticks",
          "interval")  # fmt: skip

console = Console()


@dataclass
class Results:
    machine: dict[str, Any]
    params: dict[str, Any]
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: dict[str, Any] | None = None

    def jobs_per_s(self, system: str) -> float | None:
        entry = self.throughput.get(system)
        return None if entry is None else float(entry["median_jobs_per_s"])

    def ratio(self) -> float | None:
        ours = self.jobs_per_s("myspinbot")
        bases = [v for s in ("arq", "celery") if (v := self.jobs_per_s(s)) is not None]
        return ours / max(bases) if ours is not None and bases else None


# --- arguments -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=500, help="jobs per measured round [500]")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per system [3]")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured jobs first [50]")
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="concurrent submitters (HTTP for MySpinBot, enqueue for arq) [32]",
    )
    p.add_argument("--clients", type=int, default=100, help="WebSocket clients [100]")
    p.add_argument("--ws-jobs", type=int, default=1, help="ticker jobs they spread over [1]")
    p.add_argument("--ticks", type=int, default=200, help="progress reports per job [200]")
    p.add_argument(
        "--interval",
        type=float,
        default=0.06,
        help="seconds between reports (above the 0.05 s throttle) [0.06]",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 100 jobs, 1 round, 20 clients, 50 ticks"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=["myspinbot", "arq", "celery", "latency"],
        help="run only these parts (repeatable)",
    )
    p.add_argument(
        "--baseline-python",
        type=Path,
        default=BASELINE_PYTHON,
        help="interpreter with arq and celery installed [bench/.venv/bin/python]",
    )
    p.add_argument(
        "--noop-function",
        type=Path,
        default=BENCH / "functions" / "noop",
        help="function dir for the throughput jobs [bench/functions/noop]",
    )
    p.add_argument(
        "--http-client",
        choices=CLIENTS,
        default="raw",
        help="MySpinBot's submit client: minimal keep-alive HTTP/1.1, or httpx [raw]",
    )
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--keep-data", action="store_true", help="keep data dirs and logs")
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds, args.warmup = 100, 1, 10
        args.clients, args.ticks = 20, 50
    args.parts = set(args.only or ["myspinbot", "arq", "celery", "latency"])
    return args


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": pyplatform.python_version(),
        "platform": pyplatform.platform(),
        "loadavg_start": os.getloadavg(),
    }


# --- MySpinBot -----------------------------------------------------------------------------
def bench_myspinbot(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    console.print(
        f"[bold]MySpinBot[/]: {args.rounds} x {args.jobs} no-op jobs "
        f"({args.concurrency} concurrent {args.http_client} HTTP requests)"
    )
    functions = [*CORE_FUNCTIONS, args.noop_function]
    with RunningPlatform(functions, work / "myspinbot-throughput") as platform:
        measured = asyncio.run(
            measure_throughput(
                platform, args.jobs, args.rounds, args.warmup, args.concurrency, args.http_client
            )
        )
    rounds = [r.summary() for r in measured.rounds]
    for r in rounds:
        console.print(
            f"  round: {r['jobs_per_s']:7.1f} jobs/s  (HTTP submit p50 "
            f"{r['submit_p50_ms']:.1f} ms, p99 {r['submit_p99_ms']:.1f} ms)"
        )
    config = {
        "http_client": args.http_client,
        "http_concurrency": args.concurrency,
        "noop_function": str(args.noop_function),
        "hiredis": HIREDIS_AVAILABLE,  # the platform runs in this interpreter's environment
    }
    return with_medians(
        {
            "system": "myspinbot",
            "config": config,
            "rounds": rounds,
            "cpu_ms_per_job": per_job(measured.cpu_s, args.jobs * args.rounds),
        }
    )


def per_job(cpu_s: dict[str, float], jobs: int) -> dict[str, float]:
    return {name: used / jobs * 1000 for name, used in cpu_s.items()}


def with_medians(entry: dict[str, Any]) -> dict[str, Any]:
    """Add the median rate and the CPU totals (all processes; without the client)."""
    entry["median_jobs_per_s"] = statistics.median(r["jobs_per_s"] for r in entry["rounds"])
    cpu = entry["cpu_ms_per_job"]
    entry["cpu_ms_per_job_total"] = sum(cpu.values())
    entry["cpu_ms_per_job_server"] = sum(v for k, v in cpu.items() if k != "client")
    return entry


def bench_latency(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    console.print(
        f"[bold]Progress latency[/]: {args.clients} WebSocket clients, "
        f"{args.ws_jobs} job(s) x {args.ticks} reports every {args.interval} s"
    )
    functions = [*CORE_FUNCTIONS, BENCH / "functions" / "ticker"]
    with RunningPlatform(functions, work / "myspinbot-latency") as platform:
        result: LatencyResult = asyncio.run(
            measure_latency(platform, args.clients, args.ws_jobs, args.ticks, args.interval)
        )
    return result.summary()


# --- baselines -----------------------------------------------------------------------------
def bench_baseline(
    system: str, args: argparse.Namespace, redis_url: str, work: Path
) -> dict[str, Any]:
    console.print(f"[bold]{system}[/]: {args.rounds} x {args.jobs} no-op jobs")
    log_dir = work / system
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(args.baseline_python),
        str(BENCH / f"baseline_{system}.py"),
        "drive",
        "--redis-url",
        redis_url,
        "--log-dir",
        str(log_dir),
        "--jobs",
        str(args.jobs),
        "--rounds",
        str(args.rounds),
        "--warmup",
        str(args.warmup),
    ]
    if system == "arq":
        argv += ["--concurrency", str(args.concurrency)]
    report = json.loads(run_driver(argv, log_dir / "driver.log"))
    for r in report["rounds"]:
        console.print(
            f"  round: {r['jobs_per_s']:7.1f} jobs/s  (enqueue {r['enqueue_seconds']:.2f} s)"
        )
    return with_medians(dict(report))


def run_driver(argv: list[str], log: Path) -> str:
    """Run a baseline driver; on any way out, it is stopped (it then stops its workers)."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=BENCH)
        try:
            out, _ = proc.communicate(timeout=BASELINE_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: its `finally` stops the workers
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[1]} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return out.decode()


def bench_baselines(args: argparse.Namespace, work: Path, results: Results) -> None:
    systems = [s for s in ("arq", "celery") if s in args.parts]
    if not systems:
        return
    if not args.baseline_python.exists():
        raise SystemExit(
            f"{args.baseline_python} not found; create it as bench/README.md says "
            "(or pass --only myspinbot --only latency)"
        )
    server = EmbeddedRedis(work / "baseline-redis", appendonly=False)
    try:
        url = server.start()
        for system in systems:
            results.throughput[system] = bench_baseline(system, args, url, work)
    finally:
        server.stop()


# --- report --------------------------------------------------------------------------------
def print_report(results: Results) -> None:
    m, p = results.machine, results.params
    console.print()
    console.print(
        f"Machine: {m['nproc']} CPUs, Python {m['python']}, {m['platform']}; "
        f"load avg {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}"
    )
    if results.throughput:
        console.print(throughput_table(results, p))
        print_configs(results)
    ratio = results.ratio()
    if ratio is not None:
        verdict = "[green]meets[/]" if ratio >= TARGET_RATIO else "[red]below[/]"
        console.print(
            f"MySpinBot / max(arq, celery) = [bold]{ratio:.2f}x[/] "
            f"({verdict} the {TARGET_RATIO}x target)"
        )
    if results.latency is not None:
        console.print(latency_table(results.latency))


def throughput_table(results: Results, p: dict[str, Any]) -> Table:
    t = Table(
        title=f"No-op job throughput: {p['rounds']} x {p['jobs']} jobs "
        f"(after {p['warmup']} warm-up)"
    )
    t.add_column("system")
    for col in ("jobs/s (median)", "rounds", "vs best baseline", "CPU ms/job", "w/o client"):
        t.add_column(col, justify="right")
    bases = [v for s in ("arq", "celery") if (v := results.jobs_per_s(s)) is not None]
    best = max(bases) if bases else None
    for system, entry in results.throughput.items():
        rate = float(entry["median_jobs_per_s"])
        t.add_row(
            system,
            f"{rate:.0f}",
            " / ".join(f"{r['jobs_per_s']:.0f}" for r in entry["rounds"]),
            f"{rate / best:.2f}x" if best else "-",
            f"{entry['cpu_ms_per_job_total']:.2f}",
            f"{entry['cpu_ms_per_job_server']:.2f}",
        )
    return t


def print_configs(results: Results) -> None:
    for system, entry in results.throughput.items():
        config = ", ".join(f"{k}={v}" for k, v in entry["config"].items())
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in entry["cpu_ms_per_job"].items() if v >= 0.005)
        console.print(f"  {system}: {config}\n    CPU ms/job: {cpu}")


def latency_table(lat: dict[str, Any]) -> Table:
    t = Table(
        title=f"Progress event latency (handler report -> client receive): {lat['clients']} "
        f"WebSocket clients, {lat['jobs']} job(s) x {lat['ticks']} reports"
    )
    t.add_column("")
    for col in ("p50 ms", "p99 ms", "max ms"):
        t.add_column(col, justify="right")
    t.add_row("all deliveries", *ms(lat["p50_ms"], lat["p99_ms"], lat["max_ms"]))
    t.add_row("first client per event", *ms(lat["first_client_p50_ms"], lat["first_client_p99_ms"]))
    t.add_row("last client per event", *ms(lat["last_client_p50_ms"], lat["last_client_p99_ms"]))
    t.add_row(
        "  of which ws-relay (report -> applied)", *ms(lat["relay_p50_ms"], lat["relay_p99_ms"])
    )
    lo, hi = lat["events_per_client_min"], lat["events_per_client_max"]
    per_client = str(lo) if lo == hi else f"{lo}..{hi} (unequal!)"
    t.caption = (
        f"events per client: {per_client}; gateway's own mean (report -> sent): "
        f"{lat['gateway_mean_ms']:.1f} ms; p99 < {TARGET_P99_MS:g} ms: "
        f"{'yes' if lat['p99_ms'] < TARGET_P99_MS else 'no'}"
    )
    return t


def ms(*values: float) -> list[str]:
    return [f"{v:.1f}" for v in values] + [""] * (3 - len(values))


# --- main ----------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path) -> Results:
    params = {k: getattr(args, k) for k in PARAMS}
    results = Results(machine_info(), params)
    if "myspinbot" in args.parts:
        results.throughput["myspinbot"] = bench_myspinbot(args, work)
    bench_baselines(args, work, results)
    if "latency" in args.parts:
        results.latency = bench_latency(args, work)
    results.machine["loadavg_end"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="myspinbot-jobsbench-"))
    try:
        results = run(args, work)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted; everything it started has been stopped.[/]")
        return 130
    finally:
        if args.keep_data:
            console.print(f"Data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": results.machine,
                    "params": results.params,
                    "throughput": results.throughput,
                    "latency": results.latency,
                    "ratio": results.ratio(),
                },
                indent=2,
            )
        )
        console.print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
