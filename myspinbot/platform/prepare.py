"""One-off start-up work of `myspinbot up`, run in a child process that exits when done.

Exporting a base model to ONNX imports torch and holds hundreds of MiB; creating the
bucket and migrating the database import boto3 and SQLAlchemy. None of it is needed once
the platform runs, so the long-lived supervisor does none of it itself (it would keep
those modules resident for the rest of its life): it runs

    python -m myspinbot.platform.prepare export REPOSITORY
    python -m myspinbot.platform.prepare storage
    python -m myspinbot.platform.prepare accounts
    python -m myspinbot.platform.prepare speech

with the platform's MYSPINBOT_* environment and relays what they print (`run_step`).
"""

from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

from myspinbot.errors import PermanentError
from myspinbot.settings import Settings


class StepFailed(RuntimeError):
    pass


class StepInterrupted(Exception):
    """A stop was asked for while the step ran; the step was terminated."""


def step_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "myspinbot.platform.prepare", *args]


def run_step(
    args: list[str],
    env: Mapping[str, str],
    say: Callable[[str], None],
    stop_requested: Callable[[], bool],
) -> None:
    """Run one step in a child process, relaying its output line by line to `say`.

    A stop asked for meanwhile (Ctrl-C, SIGTERM on `up`) terminates the child and raises
    StepInterrupted; a failed step raises StepFailed with the end of its output."""
    proc = subprocess.Popen(
        step_argv(*args),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own session: `up` decides when it stops (Ctrl-C reaches `up` only).
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, name="prepare-output", daemon=True).start()
    last = "no output"  # a failed step's last line says why it failed
    while True:
        if stop_requested():
            proc.terminate()
            proc.wait()
            raise StepInterrupted
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        last = line
        say(line)
    code = proc.wait()
    if code != 0:
        # Its whole output was relayed above; the error carries the line that says why.
        raise StepFailed(f"start-up step `{args[0]}` failed (exit code {code}): {last}")


# --- the steps (this module run as a program) -------------------------------------------------
def export_step(repository: Path) -> None:
    from myspinbot.imaging.export import ExportError
    from myspinbot.triton.export_check import ensure_export

    try:
        ensure_export(Settings(), repository, say=lambda message: print(message, flush=True))
    except ExportError as exc:  # a failed check or write: its message says what to do
        raise PermanentError(str(exc)) from exc


def storage_step() -> None:
    """The bucket exists and the database schema is current before any process writes."""
    from myspinbot.db import JobHistory
    from myspinbot.storage import ArtifactStore

    settings = Settings()
    ArtifactStore.from_settings(settings).ensure_bucket()
    JobHistory(settings.sqlalchemy_url).close()  # migrates


def accounts_step() -> None:
    """The owner account exists, the CLI has its token, and a login link is ready."""
    from myspinbot.accounts.bootstrap import bootstrap

    settings = Settings()
    done = bootstrap(settings)
    where = settings.secrets_dir.resolve() / "owner.token"
    if done.created:
        print(f"  accounts  created the owner account {done.owner.name!r} (admin)", flush=True)
    if done.new_cli_token:
        print(f"  accounts  the CLI's API token is in {where} (mode 0600)", flush=True)
    # History from before accounts (an upgraded data directory) becomes the owner's.
    from myspinbot.db.history import create_db_engine
    from myspinbot.db.migrations import adopt_history

    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        adopted = adopt_history(engine)
    finally:
        engine.dispose()
    if adopted:
        print(
            f"  accounts  {adopted} jobs, profiles and uploads from before accounts now "
            f"belong to {done.owner.name!r}",
            flush=True,
        )


def speech_step() -> None:
    """The configured speech engine and voice can be used (a Piper voice file exists and
    is a voice), checked before anything starts: a bad one stops `up` with the reason."""
    from myspinbot.speech import get_engine

    settings = Settings()
    if not settings.triton_url:  # `up` starts the embedded tritonserver after this step
        settings = settings.model_copy(update={"triton_url": "embedded"})
    engine = get_engine(settings)
    voice = getattr(engine, "voice", None)
    shown = f", voice {getattr(voice, 'name', voice)}" if voice else ""
    print(f"  speech    {engine.name}{shown}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m myspinbot.platform.prepare")
    steps = parser.add_subparsers(dest="step", required=True)
    export = steps.add_parser("export", help="(Re-)export the base model when stale.")
    export.add_argument("repository", type=Path)
    steps.add_parser("storage", help="Create the bucket, migrate the database.")
    steps.add_parser("accounts", help="Create the owner account and a login link.")
    steps.add_parser("speech", help="Check the configured speech engine and voice.")
    args = parser.parse_args(argv)
    try:
        if args.step == "export":
            export_step(args.repository)
        elif args.step == "accounts":
            accounts_step()
        elif args.step == "speech":
            speech_step()
        else:
            storage_step()
    except PermanentError as exc:  # bad configuration or input: the message is the story
        print(f"{args.step} failed: {exc}", flush=True)
        return 1
    except Exception as exc:  # unexpected: the traceback for the log, then what failed
        traceback.print_exc(file=sys.stdout)
        print(f"{args.step} failed: {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
