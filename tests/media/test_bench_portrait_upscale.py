"""Smoke run of bench/portrait_upscale.py (tiny sizes): a change that breaks it fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_portrait_upscale_bench_prints_its_table() -> None:
    args = ["--source", "32", "--size", "64", "--repeat", "1"]
    out = subprocess.run(
        [sys.executable, "bench/portrait_upscale.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert "| lanczos (baseline) |" in out.stdout and "| realesrgan-x4plus |" in out.stdout
