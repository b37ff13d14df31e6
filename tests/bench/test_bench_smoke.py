"""Every benchmark under bench/ still runs: each script once with tiny counts (seconds,
not minutes), checked for the table it prints. No timing is asserted; a change that
breaks a benchmark fails here instead of going unseen until someone runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, TEST_TRITON_REPOSITORY

BENCH = ROOT / "bench"
BASELINE_PYTHON = BENCH / ".venv" / "bin" / "python"  # arq and celery (bench/README.md)


def run_bench(script: str, *args: str, timeout: float = 280) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["MYSPINBOT_TRITON_REPOSITORY"] = str(TEST_TRITON_REPOSITORY)
    env["COLUMNS"] = "160"
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def test_every_script_has_a_smoke_run() -> None:
    """A new benchmark script gets its smoke run here too (helpers are imported by them)."""
    helpers = {"baseline_common.py", "http_clients.py", "platform_bench.py", "proc_cpu.py"}
    smoked = {
        "jobs_throughput.py",
        "baseline_arq.py",
        "baseline_celery.py",
        "job_stages.py",
        "portrait_upscale.py",
        "redis_fsync.py",
        "talking_head.py",
        "train_lora.py",
        "triton_txt2img.py",
        "voice.py",
        "fuzz_api.py",
    }
    scripts = {p.name for p in BENCH.glob("*.py")} - helpers
    assert scripts == smoked


def test_jobs_throughput_myspinbot_and_latency() -> None:
    out = run_bench(
        "jobs_throughput.py",
        *("--only", "myspinbot", "--only", "latency"),
        *("--jobs", "20", "--rounds", "1", "--warmup", "5", "--concurrency", "4"),
        *("--clients", "3", "--ticks", "10", "--interval", "0.02"),
    )
    assert "No-op job throughput: 1 x 20 jobs" in out
    assert "Progress event latency" in out


def test_jobs_throughput_baselines_arq_and_celery() -> None:
    # scripts/test creates bench/.venv; a missing one fails rather than skips the smoke run.
    assert BASELINE_PYTHON.exists(), "bench/.venv is missing: run ./scripts/test once"
    out = run_bench(
        "jobs_throughput.py",
        *("--only", "arq", "--only", "celery"),
        *("--jobs", "20", "--rounds", "1", "--warmup", "5", "--concurrency", "4"),
    )
    assert "No-op job throughput: 1 x 20 jobs" in out
    assert "arq" in out and "celery" in out


def test_job_stages() -> None:
    out = run_bench("job_stages.py", "--jobs", "20", "--concurrency", "4")
    assert "Per-job stages (20 jobs), ms" in out
    assert "CPU per process: 20 jobs" in out


def test_redis_fsync() -> None:
    out = run_bench(
        "redis_fsync.py", "--jobs", "20", "--rounds", "1", "--warmup", "5", "--concurrency", "4"
    )
    assert "Embedded Redis fsync policy" in out
    rows = [line for line in out.splitlines() if "everysec" in line or "always" in line]
    assert any("1.00x" in line for line in rows), out  # the baseline row


def test_talking_head(tmp_path: Path) -> None:
    out = run_bench("talking_head.py", "--seconds", "1", "--size", "128", "--repeat", "1")
    assert "| step | wall s | x real time |" in out


def test_train_lora() -> None:
    out = run_bench(
        "train_lora.py",
        *("--preset", "tiny", "--steps", "3", "--warmup", "1", "--repeats", "1"),
        *("--images", "2", "--rank", "4"),
    )
    assert "LoRA training" in out


def test_triton_txt2img() -> None:
    out = run_bench(
        "triton_txt2img.py",
        *("--preset", "tiny", "--steps", "2", "--images", "1", "--warmup", "0"),
        *("--rounds", "1", "--concurrency", "2", "--lora-steps", "2"),
    )
    assert "Text to image" in out
    assert "A new profile's LoRA online" in out


def test_portrait_upscale() -> None:
    out = run_bench("portrait_upscale.py", "--source", "32", "--size", "64", "--repeat", "1")
    assert "| lanczos (baseline) |" in out and "| realesrgan-x4plus |" in out


def test_voice() -> None:
    out = run_bench("voice.py", "--repeat", "1")
    assert "| espeak-ng (baseline) |" in out and "| default path: flite + conversion |" in out
    assert "| piper en_US-joe-medium (Triton, CPU) |" in out


def test_fuzz_api() -> None:
    out = run_bench(
        "fuzz_api.py", *("--examples", "2", "--scenarios", "2", "--steps", "3", "--no-coverage")
    )
    assert "4xx-unreadable" in out and "5xx: 0; unreadable 4xx: 0" in out
