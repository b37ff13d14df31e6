"""A server run as a child process: its output in a log file, a clean stop, `with` support.

The embedded Redis, S3 and Triton servers share this lifecycle; each adds how to start
itself and how to tell it is ready. A server that died can be started again on the same
address (`restart`): each keeps the port it was first given, so its clients only reconnect.
"""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class ServerProcess(ABC):
    log_path: Path
    stop_timeout_s: float = 10.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @abstractmethod
    def start(self) -> str:
        """Start the server, wait until it is ready, return its address."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code of a server that was started and has died since; None while it
        runs (or was never started, or was stopped on purpose)."""
        return self._proc.poll() if self._proc is not None else None

    def restart(self) -> str:
        """Start a server that died again, on the same address and data."""
        self._cleanup()
        return self.start()

    def _launch(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        # Appending keeps the history of restarts, and early failures (a bad flag,
        # a taken port) land in the same file instead of on our stdout.
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            # Its own session: a Ctrl-C in the terminal must not stop the server while the
            # processes that use it still drain their work; its owner stops it last.
            start_new_session=True,
        )
        return self._proc

    def _wait_until(
        self,
        ready: Callable[[], bool],
        *,
        what: str,
        where: str = "",
        timeout_s: float,
        interval_s: float = 0.05,
    ) -> None:
        """Poll `ready` until it holds. The child exiting first, or the timeout, is a
        RuntimeError carrying the end of its log (the timeout also stops the child)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError(f"{what} was not started")
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                code = proc.returncode
                self._cleanup()
                raise RuntimeError(
                    f"{what} exited with code {code} while starting{where}; "
                    f"log {self.log_path}:\n{self.log_tail(30)}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(
                    f"{what} was not ready{where} within {timeout_s:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail(30)}"
                )
            time.sleep(interval_s)

    def log_tail(self, max_lines: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-max_lines:]) or "(empty log)"

    def stop(self) -> None:
        """Terminate the server and wait for it; kill it if it does not exit in time."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
