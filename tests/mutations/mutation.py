"""Apply one mutation to a throwaway copy of the checkout, run the tests that must catch
it there, and report whether they did. The checkout itself is never touched.

Not collected by pytest (no file here is named test_*.py); run a script, optionally
naming which of its mutations (by label) to run:

    /path/to/python tests/mutations/mutate_02_mouth.py        # all of them
    /path/to/python tests/mutations/mutate_02_mouth.py b      # only (b)

Exit status 0: the mutation was caught (a named test failed); 1: it survived; 2: it no
longer applies (the code it mutates has moved: update its `old` text).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    label: str  # "a", "b", ...: picks it from the command line
    name: str
    edits: list[Edit]
    tests: list[str]  # pytest arguments: node ids (and options such as -k)
    hide_tools: list[str] | None = None


def main(mutations: list[Mutation]) -> int:
    """Run the mutations named on the command line (all by default); the worst outcome."""
    chosen = sys.argv[1:] or [m.label for m in mutations]
    results = [run(m.name, m.edits, m.tests, hide_tools=m.hide_tools)
               for m in mutations if m.label in chosen]  # fmt: skip
    return max(results, default=2)


@dataclass(frozen=True)
class Edit:
    path: str  # relative to the checkout
    old: str  # must occur exactly once
    new: str


def _copy(dest: Path) -> None:
    """The checkout's files (tracked, and new ones git does not ignore), nothing built."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _summary(output: str) -> list[str]:
    """The failing tests and the first line of each failure's reason."""
    lines = [ln for ln in output.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    reasons = [ln for ln in output.splitlines() if ln.startswith("E  ")][:3]
    return lines + reasons or output.strip().splitlines()[-5:]


def _path_without(tools: list[str], where: Path) -> str:
    """A PATH with every program of the current one except `tools` (linked into `where`)."""
    where.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = where / name
            if name not in tools and not link.exists():
                link.symlink_to(Path(directory) / name)
    return str(where)


def run(
    name: str,
    edits: list[Edit],
    tests: list[str],
    timeout: int = 2400,
    hide_tools: list[str] | None = None,
) -> int:
    """`hide_tools`: programs taken off the PATH (a mutation of the machine, not the code)."""
    print(f"mutation: {name}")
    with tempfile.TemporaryDirectory(prefix="myspinbot-mutant-") as tmp:
        copy = Path(tmp) / "repo"
        _copy(copy)
        for edit in edits:
            target = copy / edit.path
            text = target.read_text()
            if text.count(edit.old) != 1:
                print(f"  does not apply: {edit.path} no longer has the text it mutates once")
                return 2
            target.write_text(text.replace(edit.old, edit.new))
            print(f"  mutated {edit.path}")
        env = {**os.environ, "PYTHONPATH": str(copy)}
        if hide_tools:
            env["PATH"] = _path_without(hide_tools, Path(tmp) / "bin")
            print(f"  taken off the PATH: {', '.join(hide_tools)}")
        argv = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-rfE", "-p",
                "no:cacheprovider", f"--timeout={timeout}",
                f"--basetemp={Path(tmp) / 'pytest'}"]  # fmt: skip
        print("  running:", " ".join(tests))
        try:
            done = subprocess.run(
                argv, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout + 300
            )
        except subprocess.TimeoutExpired:
            print(f"  the tests did not finish in {timeout} s")
            return 1
        output = done.stdout + done.stderr
        for line in _summary(output):
            print("   ", re.sub(r"\s+", " ", line)[:400])
        if done.returncode == 0:
            print("  SURVIVED: every test passed with the mutation applied")
            return 1
        print(f"  CAUGHT (pytest exit {done.returncode})")
        return 0
