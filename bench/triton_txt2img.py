"""Triton-served image generation: throughput vs the in-process pipeline, and LoRA bring-up.

    python bench/triton_txt2img.py                          # tiny preset, 25 steps, CPU
    python bench/triton_txt2img.py --images 6 --scheduler ddim
    python bench/triton_txt2img.py --preset sd15-arch --size 256 --steps 10 --images 1

The chosen base model is exported to ONNX (`export_repository`) into a temporary
repository and served by the embedded tritonserver (`EmbeddedTriton`, CPU). Then, with
the same model, scheduler, steps, size and guidance 7.5, after a warm-up of each path:

- in-process: diffusers' StableDiffusionPipeline (`diffusers_pipeline` + `render_reference`),
  one image after another, at each of `--inproc-threads` torch thread counts;
- Triton, concurrency 1: one thread rendering with `TritonTxt2Img`;
- Triton, concurrency 4 (`--concurrency`): that many threads, each with its own
  TritonClient, each rendering `--images` images with different seeds, so their UNet
  requests can meet in Triton's dynamic batcher.

The paths run interleaved for `--rounds` rounds; images/s pools each path's images over
its measured wall time (first measured image to last). Ratios are against
the fastest in-process row (the baseline is never the slower thread setting). Targets
from the issue: overhead at concurrency 1 <= 15 %, concurrency 4 >= 1.5x in-process.

Then a new profile's LoRA: one tiny LoRA is trained, and `LoraModels.ensure` brings it
online through Triton's model control; the table gives the seconds to ready, the LoRA
file's size, the memory tritonserver's process tree gained (RSS and USS) and the first
vs warm request latency on the new model. See bench/README.md for results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from myspinbot.imaging.export import export_repository  # noqa: E402
from myspinbot.imaging.txt2img import (  # noqa: E402
    BaseModelConfig,
    TritonTxt2Img,
    Txt2ImgOptions,
    diffusers_pipeline,
    render_reference,
)
from myspinbot.models.loading import ResolvedModel, load_components  # noqa: E402
from myspinbot.training.export import (  # noqa: E402
    DIFFUSERS_FILE,
    result_metadata,
    save_diffusers_lora,
)
from myspinbot.training.lora import LoraConfig, LoraTrainer  # noqa: E402
from myspinbot.triton import repository as repo  # noqa: E402
from myspinbot.triton.client import TritonClient  # noqa: E402
from myspinbot.triton.lora import LoraModels, to_triton_lora  # noqa: E402
from myspinbot.triton.server import EmbeddedTriton  # noqa: E402
from tests.models.support import CAPTION, shape_images  # noqa: E402

PROMPT = "a photo of sks person"
GUIDANCE = 7.5
OVERHEAD_TARGET = 0.15  # concurrency 1: at most 15 % slower than in-process
CONCURRENT_TARGET = 1.5  # concurrency 4: at least 1.5x in-process sequential


# --- measurements --------------------------------------------------------------------
@dataclass
class PathResult:
    path: str
    concurrency: int
    images: int
    seconds: float
    latencies: list[float]
    cpu_client_s: float
    cpu_server_s: float | None
    note: str = ""
    unet_requests_per_exec: float | None = None
    request_ms: dict[str, float] = field(default_factory=dict)  # per model, client-side mean
    server_ms: dict[str, float] = field(default_factory=dict)  # per UNet request, from metrics

    round_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def cpu_per_image(r: PathResult) -> float:
    """CPU seconds per image: this process plus tritonserver's tree."""
    return (r.cpu_client_s + (r.cpu_server_s or 0.0)) / r.images


def merge(rounds: list[PathResult]) -> PathResult:
    """One path's rounds pooled: all images over all measured seconds."""
    first = rounds[0]

    def mean_of(get: Any) -> dict[str, float]:
        keys = {k for r in rounds for k in get(r)}
        return {k: statistics.mean(get(r)[k] for r in rounds if k in get(r)) for k in keys}

    per_exec = [r.unet_requests_per_exec for r in rounds if r.unet_requests_per_exec]
    server = [r.cpu_server_s for r in rounds if r.cpu_server_s is not None]
    return PathResult(
        path=first.path,
        concurrency=first.concurrency,
        images=sum(r.images for r in rounds),
        seconds=sum(r.seconds for r in rounds),
        latencies=[s for r in rounds for s in r.latencies],
        cpu_client_s=sum(r.cpu_client_s for r in rounds),
        cpu_server_s=sum(server) if server else None,
        unet_requests_per_exec=statistics.mean(per_exec) if per_exec else None,
        request_ms=mean_of(lambda r: r.request_ms),
        server_ms=mean_of(lambda r: r.server_ms),
        round_rates=[r.rate for r in rounds],
    )


class TimedClient(TritonClient):
    """A TritonClient that records each request's wall time, by model."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[tuple[str, float]] = []

    def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: list[str]
    ) -> dict[str, NDArray[Any]]:
        started = time.perf_counter()
        try:
            return super().infer(model, inputs, outputs)
        finally:
            self.calls.append((model, time.perf_counter() - started))


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `with` blocks stop tritonserver
    console = Console(width=150)
    cores = os.cpu_count() or 1
    threads = sorted({int(t) for t in args.inproc_threads.split(",") if t.strip()} or {1})
    load_start = os.getloadavg()
    options = Txt2ImgOptions(
        steps=args.steps,
        guidance_scale=GUIDANCE,
        scheduler=args.scheduler,
        seed=args.seed,
        width=args.size,
        height=args.size,
    )
    report: dict[str, Any] = {"args": vars(args) | {"cache_dir": str(args.cache_dir)}}

    with tempfile.TemporaryDirectory(prefix="myspinbot-tritonbench-") as tmp:
        repository = Path(tmp) / "triton-models"
        started = time.perf_counter()
        exported = export_repository(
            args.preset, repository, models_dir=args.cache_dir, device="cpu"
        )
        base = exported.base
        export_s = time.perf_counter() - started
        if args.ort_threads:
            patch_ort_threads(repository, args.ort_threads)
        size = args.size or base.native_resolution
        started = time.perf_counter()
        with EmbeddedTriton(repository, Path(tmp) / "triton") as triton:
            start_s = time.perf_counter() - started
            console.print(
                f"[bold]{base.spec}[/] ({exported.dtype}, CPU): {size}x{size}, {args.steps} steps, "
                f"scheduler {args.scheduler}, guidance {GUIDANCE}, {args.images} images per "
                f"path, thread and round ({args.rounds} rounds) after {args.warmup} warm-up; "
                f"{cores} CPUs, load average "
                f"{fmt_load(load_start)}; export {export_s:.1f} s, tritonserver ready in "
                f"{start_s:.1f} s"
            )
            runs: dict[tuple[str, int], list[PathResult]] = defaultdict(list)
            reference: dict[int, NDArray[Any]] = {}
            triton_image: dict[int, NDArray[Any]] = {}
            # Rounds interleave the paths, so a busy spell of the shared machine hits all alike.
            for round_ in range(1, args.rounds + 1):
                for n in threads:
                    console.print(f"round {round_}: in-process, {n} torch thread(s) ...")
                    r = run_in_process(base, options, args, n, reference)
                    runs[r.path, r.concurrency].append(r)
                # The Triton paths' client only tokenizes and steps the scheduler on small
                # tensors: one torch thread, so it does not compete with ONNX Runtime's.
                torch.set_num_threads(1)
                for c in sorted({1, args.concurrency}):
                    console.print(f"round {round_}: Triton, concurrency {c} ...")
                    r = run_triton(triton, base, options, args, c, triton_image)
                    runs[r.path, r.concurrency].append(r)
            results = [merge(rounds) for rounds in runs.values()]
            diff = float(np.abs(triton_image[args.seed] - reference[args.seed]).max())
            console.print("LoRA: training one tiny LoRA, then bringing it online ...")
            lora = run_lora(triton, base, options, args, Path(tmp) / "lora", repository)
    load_end = os.getloadavg()

    verdicts = print_results(console, results, lora, diff, args, load_start, load_end)
    report |= {
        "model": base.spec,
        "size": size,
        "load_average": [load_start, load_end],
        "export_s": export_s,
        "triton_start_s": start_s,
        "max_abs_diff": diff,
        "paths": [r.__dict__ | {"images_per_s": r.rate} for r in results],
        "lora": lora,
        "targets": verdicts,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="tiny, sd15-arch, a directory or hub id")
    p.add_argument("--size", type=int, default=None, help="image side in px (default: native)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--scheduler", default="default", help="default, ddim, euler, dpm, pndm")
    p.add_argument("--images", type=int, default=6, help="measured images per path and thread")
    p.add_argument("--warmup", type=int, default=1, help="warm-up images per path and thread")
    p.add_argument("--rounds", type=int, default=2, help="rounds of all paths, interleaved")
    p.add_argument("--concurrency", type=int, default=4, help="threads of the concurrent path")
    p.add_argument(
        "--inproc-threads",
        default="1",
        help="torch thread counts for the in-process pipeline, comma-separated, e.g. 1,2 "
        "(default 1: on a small shared CPU more threads are slower; the fastest is the baseline)",
    )
    p.add_argument(
        "--ort-threads",
        type=int,
        default=None,
        help="experiment: ONNX Runtime intra-op threads in every Triton model (patches the "
        "temporary repository's copy of model.py; default: the model code's, i.e. ORT's default)",
    )
    p.add_argument("--lora-steps", type=int, default=30, help="training steps of the LoRA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "myspinbot-bench-models"
    )
    p.add_argument("--json", type=Path, default=None, help="also write every number here")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    return p.parse_args()


def seeds(args: argparse.Namespace, thread: int) -> list[int]:
    """Warm-up seeds then measured seeds; a different seed for every image."""
    first = args.seed + 1000 * thread
    return [first + 500 + i for i in range(args.warmup)] + [first + i for i in range(args.images)]


def run_in_process(
    base: ResolvedModel,
    options: Txt2ImgOptions,
    args: argparse.Namespace,
    threads: int,
    images_out: dict[int, NDArray[Any]],
) -> PathResult:
    torch.set_num_threads(threads)
    pipe = diffusers_pipeline(base.path_or_id, args.scheduler)
    unet_s = [0.0]
    mark = [0.0]
    pipe.unet.register_forward_pre_hook(lambda *_: mark.__setitem__(0, time.perf_counter()))
    pipe.unet.register_forward_hook(
        lambda *_: unet_s.__setitem__(0, unet_s[0] + time.perf_counter() - mark[0])
    )
    all_seeds = seeds(args, 0)
    for seed in all_seeds[: args.warmup]:
        render_reference(pipe, PROMPT, replace(options, seed=seed))
    unet_s[0] = 0.0
    latencies = []
    cpu = time.process_time()
    started = time.perf_counter()
    for seed in all_seeds[args.warmup :]:
        t = time.perf_counter()
        images_out[seed] = render_reference(pipe, PROMPT, replace(options, seed=seed))
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    return PathResult(
        path=f"in-process, {threads} torch thread{'s' if threads > 1 else ''}",
        concurrency=1,
        images=len(latencies),
        seconds=seconds,
        latencies=latencies,
        cpu_client_s=time.process_time() - cpu,
        cpu_server_s=None,
        request_ms={"unet": 1000 * unet_s[0] / (len(latencies) * options.steps)},
    )


def run_triton(
    triton: EmbeddedTriton,
    base: ResolvedModel,
    options: Txt2ImgOptions,
    args: argparse.Namespace,
    concurrency: int,
    images_out: dict[int, NDArray[Any]],
) -> PathResult:
    clock: dict[str, Any] = {}

    def at_start() -> None:  # the barrier's action: everyone is warm, measure from here
        clock["metrics"] = scrape_metrics(triton.metrics_url)
        clock["server_cpu"] = tree_cpu(triton.pid)
        clock["client_cpu"] = time.process_time()
        clock["t"] = time.perf_counter()

    barrier = threading.Barrier(concurrency, action=at_start)
    latencies: list[float] = []
    calls: list[tuple[str, float]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        client = TimedClient(triton.url)  # tritonclient.http is not thread-safe
        try:
            pipe = TritonTxt2Img(BaseModelConfig(base.path_or_id), client)
            all_seeds = seeds(args, k)
            for seed in all_seeds[: args.warmup]:
                pipe(PROMPT, replace(options, seed=seed))
            barrier.wait()
            client.calls.clear()
            mine = []
            for seed in all_seeds[args.warmup :]:
                t = time.perf_counter()
                image = pipe(PROMPT, replace(options, seed=seed))
                mine.append(time.perf_counter() - t)
                if k == 0:
                    images_out[seed] = image
            with lock:
                latencies.extend(mine)
                calls.extend(client.calls)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            client.close()

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    seconds = time.perf_counter() - clock["t"]
    client_cpu = time.process_time() - clock["client_cpu"]
    server_cpu = tree_cpu(triton.pid) - clock["server_cpu"]
    metrics = metric_delta(clock["metrics"], scrape_metrics(triton.metrics_url))

    by_model: dict[str, list[float]] = defaultdict(list)
    for model, s in calls:
        by_model[model].append(s)
    unet = metrics.get(repo.UNET, {})
    requests = unet.get("nv_inference_request_success", 0.0)
    execs = unet.get("nv_inference_exec_count", 0.0)
    server_ms = {}
    if requests:
        for name, key in (
            ("queue", "nv_inference_queue_duration_us"),
            ("compute", "nv_inference_compute_infer_duration_us"),
            ("request", "nv_inference_request_duration_us"),
        ):
            server_ms[name] = unet.get(key, 0.0) / requests / 1000
    return PathResult(
        path="Triton" + (f", ORT {args.ort_threads} thread(s)" if args.ort_threads else ""),
        concurrency=concurrency,
        images=len(latencies),
        seconds=seconds,
        latencies=latencies,
        cpu_client_s=client_cpu,
        cpu_server_s=server_cpu,
        unet_requests_per_exec=requests / execs if execs else None,
        request_ms={m: 1000 * statistics.mean(v) for m, v in by_model.items()},
        server_ms=server_ms,
    )


# --- LoRA bring-up -------------------------------------------------------------------
def train_lora(base: ResolvedModel, out: Path, steps: int) -> Path:
    """One small LoRA on coloured shapes (as tests/triton_support.train_lora); its file."""
    trainer = LoraTrainer(
        load_components(base, "cpu"),
        LoraConfig(rank=4, alpha=8, steps=steps, learning_rate=5e-3, seed=1),
        "cpu",
    )
    images = shape_images(4)
    trainer.prepare(images, [CAPTION] * len(images))
    result = trainer.train(lambda _: None)
    meta = result_metadata(result, base, trigger_token="sks", image_count=len(images))
    return save_diffusers_lora(result, out, meta)


def run_lora(
    triton: EmbeddedTriton,
    base: ResolvedModel,
    options: Txt2ImgOptions,
    args: argparse.Namespace,
    out: Path,
    repository: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    lora_file = train_lora(base, out, args.lora_steps)
    train_s = time.perf_counter() - started
    data = lora_file.read_bytes()
    assert lora_file.name == DIFFUSERS_FILE

    client = TimedClient(triton.url, admin_key=triton.admin_key)
    try:
        pipe = TritonTxt2Img(BaseModelConfig(base.path_or_id), client)
        before = tree_memory(triton.pid)
        started = time.perf_counter()
        # The repository's model code: the checkout's, unless --ort-threads patched it.
        code = repo.model_code(repository)
        model = LoraModels(client, None, max_loaded=4, model_code=code).ensure(
            "bench-profile", lambda: data
        )
        ensure_s = time.perf_counter() - started
        after = tree_memory(triton.pid)

        # The new model's first image (its first UNet request is the first ever), then warm
        # ones; the base model's, for comparison, with the same client.
        client.calls.clear()
        lora_images = []
        for i in range(3):
            t = time.perf_counter()
            pipe(PROMPT, replace(options, seed=args.seed + i), unet_model=model.name)
            lora_images.append(time.perf_counter() - t)
        lora_unet = [s for m, s in client.calls if m == model.name]
        client.calls.clear()
        t = time.perf_counter()
        pipe(PROMPT, replace(options, seed=args.seed), unet_model=repo.UNET)
        base_image = time.perf_counter() - t
        base_unet = [s for m, s in client.calls if m == repo.UNET]
    finally:
        client.close()
    new_pids = sorted(set(after["pids"]) - set(before["pids"]))
    return {
        "train_s": train_s,
        "ensure_s": ensure_s,
        "load_seconds": model.load_seconds,
        "file_bytes": len(data),
        "triton_file_bytes": len(to_triton_lora(data)),
        "rss_before": before["rss"],
        "rss_after": after["rss"],
        "uss_before": before["uss"],
        "uss_after": after["uss"],
        "new_processes": {pid: after["per_pid"][pid] for pid in new_pids},
        "memory_source": after["source"],
        "first_unet_ms": 1000 * lora_unet[0],
        "warm_unet_ms": 1000 * statistics.median(lora_unet[1:]),
        "base_unet_ms": 1000 * statistics.median(base_unet),
        "first_image_s": lora_images[0],
        "warm_image_s": statistics.median(lora_images[1:]),
        "base_image_s": base_image,
    }


def patch_ort_threads(repository: Path, threads: int) -> None:
    """ONNX Runtime's intra-op thread count for every model of the embedded server, through
    the environment the server passes to its python backend (triton-models/unet/1/model.py)."""
    os.environ["MYSPINBOT_ORT_THREADS"] = str(threads)


# --- tritonserver's process tree -------------------------------------------------------
def _tree(pid: int | None) -> list[Any]:
    import psutil

    if pid is None:
        return []
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu(pid: int | None) -> float:
    """User + system CPU seconds of tritonserver and its backend stubs (live ones)."""
    try:
        total = 0.0
        for p in _tree(pid):
            t = p.cpu_times()
            total += t.user + t.system
        return total
    except ImportError:
        return _proc_tree_cpu(pid)


def tree_memory(pid: int | None) -> dict[str, Any]:
    """RSS (and USS, where psutil can read it) of tritonserver and its children."""
    try:
        per_pid: dict[int, dict[str, Any]] = {}
        for p in _tree(pid):
            info = p.memory_full_info()
            per_pid[p.pid] = {"name": p.name(), "rss": info.rss, "uss": info.uss}
        source = "psutil"
    except ImportError:
        per_pid = {
            q: {"name": _proc_name(q), "rss": _proc_rss(q), "uss": None} for q in _proc_tree(pid)
        }
        source = "/proc VmRSS"
    rss = sum(v["rss"] for v in per_pid.values())
    uss = None if source != "psutil" else sum(v["uss"] for v in per_pid.values())
    return {"pids": list(per_pid), "per_pid": per_pid, "rss": rss, "uss": uss, "source": source}


def _proc_tree(pid: int | None) -> list[int]:
    if pid is None:
        return []
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children[p])
    return out


def _proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _proc_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _proc_tree_cpu(pid: int | None) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


# --- Triton's Prometheus metrics -------------------------------------------------------
_METRIC = re.compile(r'^(nv_inference_\w+)\{model="([^"]+)",version="[^"]*"\} ([0-9.eE+-]+)$')


def scrape_metrics(url: str) -> dict[str, dict[str, float]]:
    try:
        text = httpx.get(url, timeout=5.0).text
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[m.group(2)][m.group(1)] = float(m.group(3))
    return out


def metric_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        model: {k: v - before.get(model, {}).get(k, 0.0) for k, v in values.items()}
        for model, values in after.items()
    }


# --- output ----------------------------------------------------------------------------
def print_results(
    console: Console,
    results: list[PathResult],
    lora: dict[str, Any],
    diff: float,
    args: argparse.Namespace,
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
) -> dict[str, Any]:
    in_process = [r for r in results if r.cpu_server_s is None]
    baseline = max(in_process, key=lambda r: r.rate)
    c1 = next(r for r in results if r.cpu_server_s is not None and r.concurrency == 1)
    cn = next((r for r in results if r.cpu_server_s is not None and r.concurrency > 1), None)

    rows = []
    for r in results:
        rows.append(
            [
                r.path + (" (baseline)" if r is baseline else ""),
                str(r.concurrency),
                f"{r.rate:.2f}",
                " / ".join(f"{v:.2f}" for v in r.round_rates),
                f"{r.rate / baseline.rate:.2f}x",
                f"{statistics.median(r.latencies):.2f}",
                f"{cpu_per_image(r):.2f}",
                f"{r.request_ms.get('unet', 0):.1f}",
                "" if r.unet_requests_per_exec is None else f"{r.unet_requests_per_exec:.2f}",
            ]
        )
    headers = [
        "path",
        "concurrency",
        "images/s",
        "per round",
        "vs in-process",
        "latency s (median)",
        "CPU s/image",
        "UNet ms/call",
        "UNet requests/exec",
    ]
    render_table(console, "Text to image", headers, rows, args.markdown)

    overhead = baseline.rate / c1.rate - 1
    verdicts: dict[str, Any] = {
        "overhead_c1": overhead,
        "overhead_c1_met": overhead <= OVERHEAD_TARGET,
    }
    console.print(
        f"Overhead at concurrency 1: {100 * overhead:+.0f} % (target <= "
        f"{100 * OVERHEAD_TARGET:.0f} %): {'met' if overhead <= OVERHEAD_TARGET else 'NOT met'}."
    )
    if cn is not None:
        ratio = cn.rate / baseline.rate
        verdicts |= {"ratio_cn": ratio, "ratio_cn_met": ratio >= CONCURRENT_TARGET}
        console.print(
            f"Concurrency {cn.concurrency}: {ratio:.2f}x in-process sequential (target >= "
            f"{CONCURRENT_TARGET}x): {'met' if ratio >= CONCURRENT_TARGET else 'NOT met'}."
        )
    # CPU per image is what a busy shared machine disturbs least: the same comparison in it.
    cpu_overhead = cpu_per_image(c1) / cpu_per_image(baseline) - 1
    verdicts["cpu_overhead_c1"] = cpu_overhead
    line = (
        f"CPU per image vs in-process (not a target; less noisy): c=1 {100 * cpu_overhead:+.0f} %"
    )
    if cn is not None:
        line += (
            f", c={cn.concurrency} {100 * (cpu_per_image(cn) / cpu_per_image(baseline) - 1):+.0f} %"
        )
    console.print(line + ".")
    console.print(f"Triton vs in-process image, seed {args.seed}: max |diff| {diff:.2e}.")
    for r in results:
        if r.cpu_server_s is None:
            continue
        calls = ", ".join(f"{m} {ms:.1f}" for m, ms in sorted(r.request_ms.items()))
        server = ", ".join(f"{k} {v:.1f}" for k, v in r.server_ms.items())
        console.print(
            f"Triton c={r.concurrency}: client-side ms per request: {calls}; UNet in the "
            f"server, ms per request: {server}; CPU s/image client "
            f"{r.cpu_client_s / r.images:.2f}, tritonserver tree "
            f"{(r.cpu_server_s or 0) / r.images:.2f}."
        )

    new = lora["new_processes"]
    uss = lora["uss_after"] - lora["uss_before"] if lora["uss_before"] is not None else None
    lora_rows = [
        ["LoRA training (not part of bring-up)", f"{lora['train_s']:.1f} s"],
        ["LoraModels.ensure: new profile ready", f"{lora['ensure_s']:.2f} s"],
        [
            "LoRA file (diffusers / as sent to Triton)",
            f"{lora['file_bytes']:,} / {lora['triton_file_bytes']:,} bytes",
        ],
        [
            f"tritonserver tree RSS before -> after ({lora['memory_source']})",
            f"{mib(lora['rss_before'])} -> {mib(lora['rss_after'])} "
            f"(+{mib(lora['rss_after'] - lora['rss_before'])})",
        ],
    ]
    if uss is not None:
        lora_rows.append(["  of which unique to processes (USS)", f"+{mib(uss)}"])
    for pid, info in new.items():
        uss_text = f", USS {mib(info['uss'])}" if info.get("uss") is not None else ""
        lora_rows.append(
            [f"  new process {info['name']} ({pid})", f"RSS {mib(info['rss'])}{uss_text}"]
        )
    first_image = lora["ensure_s"] + lora["first_image_s"]
    lora_rows += [
        ["first UNet request on the new model", f"{lora['first_unet_ms']:.1f} ms"],
        [
            "warm UNet request, LoRA / base model",
            f"{lora['warm_unet_ms']:.1f} / {lora['base_unet_ms']:.1f} ms",
        ],
        ["first image on the new model", f"{lora['first_image_s']:.2f} s"],
        [
            "warm image, LoRA / base model",
            f"{lora['warm_image_s']:.2f} / {lora['base_image_s']:.2f} s",
        ],
        ["time to a new profile's first image (ensure + image)", f"{first_image:.2f} s"],
    ]
    render_table(console, "A new profile's LoRA online", ["", "value"], lora_rows, args.markdown)
    console.print(
        f"torch threads: in-process rows as labelled; the Triton client 1 (it only tokenizes "
        f"and steps the scheduler); ONNX Runtime in each tritonserver model: "
        f"{args.ort_threads or 'its default (one per physical core)'}. "
        f"Load average {fmt_load(load_start)} -> "
        f"{fmt_load(load_end)}."
    )
    return verdicts


def render_table(
    console: Console, title: str, headers: list[str], rows: list[list[str]], markdown: bool
) -> None:
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|---" + "|---:" * (len(headers) - 1) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in load)


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
