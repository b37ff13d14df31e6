"""The embedded servers `myspinbot up` started, kept running like function replicas.

A server that dies is started again on the same port and the same data (the Redis AOF,
the S3 folder, the Triton repository, the same keys), so the processes that use it
reconnect to the address they already have. The restart runs in a thread: a slow one
(tritonserver loads every model) holds up neither the other servers nor the replicas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from myspinbot.serverproc import ServerProcess

RESTART_BACKOFF_S = (0.0, 0.5, 1, 2, 5, 10)
# A server that stayed up this long starts again from the shortest backoff.
STABLE_AFTER_S = 60.0


@dataclass
class SupervisedServer:
    name: str
    server: ServerProcess
    url: str
    say: Callable[[str], None]
    restarts: int = 0
    _failures: int = 0
    _next_start: float = 0.0
    _started_at: float = field(default_factory=time.monotonic)
    _thread: threading.Thread | None = None
    _error: str | None = None

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def restarting(self) -> bool:
        return self._thread is not None

    def poll(self) -> bool:
        """Notice a death and restart it (with backoff); True when a restart finished."""
        if self._thread is not None:
            if self._thread.is_alive():
                return False
            self._thread = None
            if self._error is None:
                self.restarts += 1
                self._started_at = time.monotonic()
                self.say(f"  {self.name} is serving again on {self.url}")
                return True
            self._failures += 1
            self._next_start = time.monotonic() + self._backoff()
            self.say(
                f"  {self.name} did not start: {self._error}; trying again in {self._backoff():g} s"
            )
            return False
        if self._next_start == 0.0:
            code = self.server.exit_code
            if code is None:
                return False
            if time.monotonic() - self._started_at > STABLE_AFTER_S:
                self._failures = 0
            self._next_start = time.monotonic() + self._backoff()
            self.say(
                f"  {self.name} exited with {code}; restarting it on {self.url} "
                f"(log: {self.server.log_path})"
            )
        if time.monotonic() >= self._next_start:
            self._next_start = 0.0
            self._error = None
            self._thread = threading.Thread(
                target=self._restart, name=f"restart-{self.name}", daemon=True
            )
            self._thread.start()
        return False

    def _backoff(self) -> float:
        return RESTART_BACKOFF_S[min(self._failures, len(RESTART_BACKOFF_S) - 1)]

    def _restart(self) -> None:
        try:
            self.server.restart()
        except Exception as exc:  # any failure to start is retried; the message is logged
            self._error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.server.stop()
