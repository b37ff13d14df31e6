"""The MySpinBot side of bench/jobs_throughput.py: run `myspinbot up`, measure it.

- `RunningPlatform`: `python -m myspinbot up` on a free port and a temp data dir,
  stopped with SIGINT (and any process left under that data dir after it exits).
- `measure_throughput`: N no-op jobs over HTTP with bounded concurrency, done
  when ws-relay's `generate|completed` counter has grown by N.
- `measure_latency`: WebSocket clients subscribed to ticker jobs, recording
  `time.time() - msg["ts"]` for every progress message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import redis.asyncio as aioredis
from http_clients import Submitter, make_submitter
from proc_cpu import CpuMeter
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from myspinbot import keys
from myspinbot.netutil import free_port
from myspinbot.platform.supervisor import up_argv

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
DONE_POLL_S = 0.005  # one HGET per poll on the platform's Redis; the API is not polled
FINISH_TIMEOUT_S = 600.0
COMPLETED_FIELD = "generate|completed"
FAILED_FIELD = "generate|failed"
GO_KEY = "bench:ticker:go:{job_id}"  # bench/functions/ticker/handler.py waits for it
LATENCY_METRIC = "myspinbot_event_delivery_seconds"
# Clients connect and subscribe at most this many at a time: a burst of ~100 at once
# exhausts the gateway's Redis connection pool (see README, findings).
CONNECT_CONCURRENCY = 10
MARKER_ENV = "BENCH_PLATFORM_DIR"  # set on `up`; the processes it starts inherit it


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks stop what was started."""

    def handler(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)


# --- the platform process ------------------------------------------------------------------
class RunningPlatform:
    """`myspinbot up` with the given function dirs; a context manager."""

    def __init__(
        self, functions: list[Path], data_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.functions = [f.resolve() for f in functions]
        self.env = env or {}  # MYSPINBOT_* settings for this platform (others are dropped)
        self.data_dir = data_dir.resolve()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.log = self.data_dir / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""  # the owner's API token (`up` writes it to the data dir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.stop()

    @property
    def redis_url(self) -> str:
        state = json.loads((self.data_dir / "run" / "platform.json").read_text())
        # The state file hides the embedded Redis's password; `up` keeps it in secrets/.
        password = (self.data_dir / "secrets" / "redis.password").read_text().strip()
        return str(state["urls"]["redis"]).replace(":***@", f":{password}@", 1)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = up_argv(self.port, self.data_dir, list(self.functions))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
        env.update(self.env)
        env[MARKER_ENV] = str(self.data_dir)  # inherited by all it starts: see processes()
        with open(self.log, "ab") as log:
            # Its own session: a Ctrl-C reaches only us, and we stop it in order.
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:  # Ctrl-C included: `with` does not call __exit__ for this
            self.stop()
            raise
        self.token = (self.data_dir / "secrets" / "owner.token").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def metrics_headers(self) -> dict[str, str]:
        token = (self.data_dir / "secrets" / "metrics.token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"platform not healthy in {START_TIMEOUT_S:.0f} s; see {self.log}"
                )
            time.sleep(0.3)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"`myspinbot up` exited:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def processes(self) -> dict[str, list[int]]:
        """The platform's processes by role (`up`, redis-server, each function, ...)."""
        groups: dict[str, list[int]] = {}
        for pid, cmdline in platform_processes(self.data_dir).items():
            groups.setdefault(role(cmdline), []).append(pid)
        return groups

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Interrupted while starting, `up` can exit before stopping its children.
        _terminate(leftover_pids(self.data_dir))


def leftover_pids(data_dir: Path) -> list[int]:
    """Processes started for this data dir (children of `up`, which is gone by now)."""
    return list(platform_processes(data_dir))


def platform_processes(data_dir: Path) -> dict[int, str]:
    """pid -> command line of `up` and everything it started for this data dir."""
    marker = f"{MARKER_ENV}={data_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        # redis-server writes its process title over its environment; it runs in the data dir.
        if marker in environ or Path(cwd).is_relative_to(data_dir):
            found[int(entry.name)] = cmdline.decode(errors="replace").strip()
    return found


def role(cmdline: str) -> str:
    """A readable name for a platform process, from its command line."""
    words = cmdline.split()
    if "function" in words and "run" in words:
        replica = words[words.index("--replica") + 1] if "--replica" in words else "0"
        return f"{Path(words[words.index('run') + 1]).name}-{replica}"
    for name in ("gateway", "up"):
        if name in words:
            return name
    return Path(words[0]).name if words else "?"


def _terminate(pids: list[int], grace_s: float = 10.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if Path(f"/proc/{p}").exists()]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- throughput ----------------------------------------------------------------------------
@dataclass
class ThroughputRound:
    jobs: int
    seconds: float  # first submit -> the last job completed
    submit_seconds: float  # first submit -> the last 202
    submit_latencies_ms: list[float] = field(repr=False)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    def summary(self) -> dict[str, float]:
        lat = self.submit_latencies_ms
        return {
            "jobs": self.jobs,
            "seconds": self.seconds,
            "jobs_per_s": self.jobs_per_s,
            "submit_seconds": self.submit_seconds,
            "submit_p50_ms": percentile(lat, 50),
            "submit_p99_ms": percentile(lat, 99),
        }


@dataclass
class Throughput:
    rounds: list[ThroughputRound]
    cpu_s: dict[str, float]  # CPU seconds per process over the measured rounds


NOOP_BODY = {"mode": "direct", "narration": "x", "options": {}}


async def job_counter(client: aioredis.Redis, name: str) -> int:
    return int(await client.hget(keys.METRICS_JOBS, name) or 0)


async def wait_completed(client: aioredis.Redis, target: int) -> float:
    """perf_counter() when `generate|completed` reaches `target`."""
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    while await job_counter(client, COMPLETED_FIELD) < target:
        if await job_counter(client, FAILED_FIELD):
            raise RuntimeError("a benchmark job failed; see the platform logs")
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not completed after {FINISH_TIMEOUT_S:.0f} s")
        await asyncio.sleep(DONE_POLL_S)
    return time.perf_counter()


async def throughput_round(
    submitter: Submitter, client: aioredis.Redis, jobs: int, concurrency: int
) -> ThroughputRound:
    target = await job_counter(client, COMPLETED_FIELD) + jobs
    todo = iter(range(jobs))
    latencies: list[float] = []

    async def submit_some() -> None:
        for _ in todo:  # one shared iterator: each job is submitted once
            t = time.perf_counter()
            await submitter.submit(NOOP_BODY)
            latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    watcher = asyncio.create_task(wait_completed(client, target))
    try:
        await asyncio.gather(*(submit_some() for _ in range(concurrency)))
    except BaseException:
        watcher.cancel()
        raise
    submitted = time.perf_counter() - started
    finished = await watcher
    return ThroughputRound(jobs, finished - started, submitted, latencies)


async def measure_throughput(
    platform: RunningPlatform,
    jobs: int,
    rounds: int,
    warmup: int,
    concurrency: int,
    http_client: str = "raw",
) -> Throughput:
    client = aioredis.Redis.from_url(platform.redis_url, decode_responses=True)
    submitter = make_submitter(http_client, platform.url, concurrency, platform.token)
    meter = CpuMeter({"client": [os.getpid()], **platform.processes()})
    try:
        await throughput_round(submitter, client, warmup, concurrency)
        meter.start()
        results = [
            await throughput_round(submitter, client, jobs, concurrency) for _ in range(rounds)
        ]
        cpu = meter.stop()
        await _check_listed(platform, warmup + jobs * rounds)
    finally:
        await submitter.aclose()
        await client.aclose()
    return Throughput(results, cpu)


async def _check_listed(platform: RunningPlatform, expected: int, timeout_s: float = 10.0) -> None:
    """A few API calls at the end: the SQL history agrees that every job completed
    (ws-relay commits it just after the Redis state the benchmark watches)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(
        base_url=platform.url, timeout=60, headers=platform.headers
    ) as http:
        while True:
            resp = await http.get("/api/jobs", params={"state": "completed", "limit": 1})
            total = int(resp.json()["total"])
            if total == expected:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"/api/jobs lists {total} completed jobs, expected {expected}")
            await asyncio.sleep(0.2)


# --- progress latency ----------------------------------------------------------------------
@dataclass
class LatencyResult:
    clients: int
    jobs: int
    ticks: int
    per_client: list[dict[str, float]] = field(repr=False)  # event id -> latency (ms)
    relay_ms: list[float] = field(repr=False)  # report -> applied by ws-relay, per event
    gateway_mean_ms: float  # the gateway's own view: report -> sent (its histogram)

    def summary(self) -> dict[str, Any]:
        lat = [x for c in self.per_client for x in c.values()]
        by_event: dict[str, list[float]] = {}
        for c in self.per_client:
            for event_id, ms in c.items():
                by_event.setdefault(event_id, []).append(ms)
        first = [min(v) for v in by_event.values()]
        last = [max(v) for v in by_event.values()]
        counts = [len(c) for c in self.per_client]
        return {
            "clients": self.clients,
            "jobs": self.jobs,
            "ticks": self.ticks,
            "events": len(lat),
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "max_ms": max(lat),
            "mean_ms": statistics.fmean(lat),
            "events_per_client_min": min(counts),
            "events_per_client_max": max(counts),
            "first_client_p50_ms": percentile(first, 50),
            "first_client_p99_ms": percentile(first, 99),
            "last_client_p50_ms": percentile(last, 50),
            "last_client_p99_ms": percentile(last, 99),
            "relay_p50_ms": percentile(self.relay_ms, 50),
            "relay_p99_ms": percentile(self.relay_ms, 99),
            "gateway_mean_ms": self.gateway_mean_ms,
        }


async def _gateway_latency(http: httpx.AsyncClient) -> tuple[float, float]:
    """(sum, count) of the gateway's report-to-send histogram."""
    text = (await http.get("/metrics")).text
    values = {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith(LATENCY_METRIC)
    }
    return values.get(f"{LATENCY_METRIC}_sum", 0.0), values.get(f"{LATENCY_METRIC}_count", 0.0)


async def _subscribe(ws: ClientConnection, job_id: str) -> None:
    await ws.send(json.dumps({"type": "subscribe", "jobId": job_id}))
    first = json.loads(await ws.recv())
    if not first.get("snapshot"):
        raise RuntimeError(f"expected a snapshot first, got {first}")


async def _listen(ws: ClientConnection) -> dict[str, float]:
    """Latency (ms) of each progress message, by event id, until the job's end message."""
    latencies = {}
    async for raw in ws:
        now = time.time()
        msg = json.loads(raw)
        if msg["type"] == "progress":
            latencies[msg["eventId"]] = (now - float(msg["ts"])) * 1000
        elif msg["type"] in ("done", "error"):
            return latencies
    raise RuntimeError("WebSocket closed before the job ended")


async def read_fanout(client: aioredis.Redis) -> list[tuple[str, str, dict[str, Any]]]:
    """(fanout entry id, job id, applied event) for everything ws-relay applied (capped
    stream: the latest 10,000 events). The entry id is the Redis time of the apply."""
    entries: Any = await client.xrange(keys.FANOUT, "-", "+")
    return [(str(eid), str(f["job"]), json.loads(f["data"])) for eid, f in entries]


def stream_id_ms(stream_id: str) -> int:
    return int(stream_id.split("-", 1)[0])


async def _relay_latencies(client: aioredis.Redis, job_ids: list[str]) -> list[float]:
    """Report -> applied (ms) of the jobs' progress events."""
    wanted = set(job_ids)
    return [
        stream_id_ms(fanout_id) - float(ev["ts"]) * 1000
        for fanout_id, job_id, ev in await read_fanout(client)
        if job_id in wanted and ev["kind"] == "progress"
    ]


async def _open(
    stack: contextlib.AsyncExitStack,
    platform: RunningPlatform,
    job_id: str,
    limit: asyncio.Semaphore,
) -> ClientConnection:
    """A connected, subscribed client (closed with `stack`)."""
    async with limit:
        ws = await stack.enter_async_context(
            connect(
                platform.ws_url,
                max_queue=None,
                ping_interval=None,
                additional_headers=platform.headers,
            )
        )
        await _subscribe(ws, job_id)
    return ws


async def measure_latency(
    platform: RunningPlatform,
    clients: int,
    jobs: int,
    ticks: int,
    interval: float,
    connect_concurrency: int = CONNECT_CONCURRENCY,
) -> LatencyResult:
    # `stage` is free text; `options` is validated strictly (an `options.bench` is a 422).
    body = {**NOOP_BODY, "stage": json.dumps({"bench": {"ticks": ticks, "interval": interval}})}
    submitter = make_submitter("raw", platform.url, 1, platform.token)
    job_ids = [await submitter.submit(body) for _ in range(jobs)]
    await submitter.aclose()
    limit = asyncio.Semaphore(connect_concurrency)
    client = aioredis.Redis.from_url(platform.redis_url, decode_responses=True)
    async with (
        httpx.AsyncClient(
            base_url=platform.url, timeout=60, headers=platform.metrics_headers
        ) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        try:
            conns = await asyncio.gather(
                *(_open(stack, platform, job_ids[i % jobs], limit) for i in range(clients))
            )
            before = await _gateway_latency(http)
            await client.mset({GO_KEY.format(job_id=j): "1" for j in job_ids})
            per_client = await asyncio.wait_for(
                asyncio.gather(*(_listen(ws) for ws in conns)), timeout=ticks * interval * 3 + 120
            )
            after = await _gateway_latency(http)
            relay = await _relay_latencies(client, job_ids)
        finally:
            await client.aclose()
    gateway_mean = (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
    return LatencyResult(clients, jobs, ticks, per_client, relay, gateway_mean)
