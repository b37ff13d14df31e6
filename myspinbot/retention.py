"""Retention: finished jobs older than `MYSPINBOT_RETENTION_DAYS` are deleted, with their
inputs and outputs, as `DELETE /api/jobs/{id}` would; so are uploads (portraits,
narrations) that old which no job names. Profiles are kept until someone deletes them:
they are what a person trained on purpose, not a by-product.

It runs in ws-relay (functions/ws-relay), next to the sweeper of abandoned submits: a
process that always runs, already holds Redis, SQL and S3, and is the one writer of job
state. With several replicas, one sweeps per round (a Redis key taken with SET NX).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis

from myspinbot import keys
from myspinbot.deletion import Deletion, DeletionRefused, HistoryCatchingUp

log = logging.getLogger(__name__)
DAY_S = 86400.0
BATCH = 200
# Bound one round's work; what is left waits for the next round.
MAX_BATCHES = 50


@dataclass
class Swept:
    jobs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Jobs that could not be deleted this round (e.g. retried meanwhile)."""


def sweep(deletion: Deletion, retention_s: float, now: float | None = None) -> Swept:
    """Delete what finished (or was uploaded) more than `retention_s` before `now`."""
    cutoff = (time.time() if now is None else now) - retention_s
    out = Swept()
    for _ in range(MAX_BATCHES):
        jobs = deletion.history.finished_before(cutoff, BATCH)
        todo = [j for j in jobs if j.id not in out.skipped]
        for job in todo:
            try:
                if deletion.job(job.id) is not None:
                    out.jobs.append(job.id)
            except DeletionRefused:
                out.skipped.append(job.id)
        if len(jobs) < BATCH or not todo:
            break
    out.uploads = deletion.unused_uploads(before=cutoff)
    if out.jobs or out.uploads:
        log.warning(
            "Retention: deleted %d job(s) and %d upload(s) older than %.1f days",
            len(out.jobs),
            len(out.uploads),
            retention_s / DAY_S,
        )
    return out


class RetentionSweeper:
    """Runs `sweep` every `every_s` in a daemon thread; one replica per round."""

    def __init__(
        self, client: redis.Redis, deletion: Deletion, retention_s: float, every_s: float
    ) -> None:
        self._client, self._deletion = client, deletion
        self._retention_s, self._every_s = retention_s, every_s
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                # Expires before the next round: a replica that died mid-round holds nothing.
                if self._client.set(keys.RETENTION_ROUND, "1", nx=True, px=self._round_ms()):
                    sweep(self._deletion, self._retention_s)
                    self.rounds += 1
            except HistoryCatchingUp as exc:
                log.info("Retention waits: %s", exc)
            except Exception as exc:  # S3, SQL or Redis away: try again next round
                log.warning("Retention sweep failed: %s", exc)
            if self._stop.wait(self._every_s):
                return

    def _round_ms(self) -> int:
        return max(int(self._every_s * 1000 * 0.9), 1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
