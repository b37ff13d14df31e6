"""The code base stays ruff-clean and mypy-strict-clean (config in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True)


def test_ruff() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_the_shared_package_and_gateway() -> None:
    result = run("mypy", "myspinbot", "gateway")
    assert result.returncode == 0, result.stdout + result.stderr
