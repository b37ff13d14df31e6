"""Job history converges: with PostgreSQL away for longer than any retry window the
relay used to have, live state keeps moving and every final state reaches SQL after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from prometheus_client import REGISTRY

from myspinbot import keys
from myspinbot.db import JobHistory
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState
from myspinbot.jobs.relay import Relay
from myspinbot.settings import Settings
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.support import wait_for
from tests.tcp_proxy import TcpProxy

# The relay used to dead-letter an event after 20 failed deliveries (about 2.6 min).
OLD_DEAD_LETTER_TRIES = 20


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_schema_url()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    target = urlsplit(POSTGRES_URL.replace("postgresql+psycopg", "postgresql"))
    p = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    yield p
    p.stop()


def publish(r: redis.Redis, ev: dict) -> tuple[str, dict]:
    stream, fields = events.xadd_args(ev)
    return r.xadd(stream, fields), ev


def lifecycle(r: redis.Redis, job: Job) -> list[tuple[str, dict]]:
    return [
        publish(r, events.created(job)),
        publish(r, events.state(job.id, JobState.running)),
        publish(r, events.progress(job.id, 50, step="work", message="half", eta_seconds=1)),
        publish(r, events.state(job.id, JobState.completed, result={"n": 1})),
    ]


def failures() -> float:
    return REGISTRY.get_sample_value("myspinbot_relay_sql_failures_total") or 0.0


def test_sql_outage_loses_no_final_state(
    r: redis.Redis,
    pg_url: str,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    host_port = urlsplit(POSTGRES_URL).netloc.split("@")[-1]
    proxied = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    # Retry fast, so the test sees many failed attempts in little time.
    rl = Relay(r, JobHistory(proxied), Settings(data_dir=tmp_path, history_retry_max_s=0.05))
    try:
        early = Job(type="generate")
        rl.apply(lifecycle(r, early))  # SQL up: written at once

        proxy.stop()
        before = failures()
        jobs = [Job(type="generate") for _ in range(10)]
        for job in jobs:
            rl.apply(lifecycle(r, job))  # never raises: live state moves on
        assert {r.hget(keys.job(j.id), "state") for j in jobs} == {"completed"}
        assert r.xlen(keys.HISTORY_OUTBOX) > 0
        wait_for(
            lambda: failures() - before > OLD_DEAD_LETTER_TRIES,
            what="more failed SQL attempts than the old dead-letter window allowed",
        )
        assert not r.exists(keys.dead_letter(keys.EVENTS))

        proxy.start()
        wait_for(lambda: r.xlen(keys.HISTORY_OUTBOX) == 0, what="the outbox to drain")
    finally:
        rl.close()
    direct = JobHistory(pg_url)
    try:
        for job in [early, *jobs]:
            stored = direct.get_job(job.id)
            assert stored is not None and stored.state == JobState.completed, job.id
            assert stored.result == {"n": 1}
            recorded = [(e.kind.value, e.state.value) for e in direct.job_events(job.id)]
            assert recorded[0] == ("created", "queued") and recorded[-1] == ("state", "completed")
    finally:
        direct.close()


def test_any_later_event_repairs_a_missed_sql_write(r: redis.Redis, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    history = JobHistory(settings.sqlalchemy_url)
    rl = Relay(r, history, settings)
    try:
        job = Job(type="train")
        rl.apply(lifecycle(r, job))
        # SQL lost the final write (an old version's failed commit, a restore from backup):
        history.record([job.model_copy(update={"state": JobState.running})], [])
        # A late, stale event of the job (it is finished) still upserts its snapshot.
        late = publish(r, events.progress(job.id, 60, step="x", message=None, eta_seconds=None))
        assert rl.apply([late])[0].status == "stale"
        stored = history.get_job(job.id)
        assert stored is not None and stored.state == JobState.completed
        # ...and a replayed older snapshot never takes a finished job back.
        history.record([job.model_copy(update={"state": JobState.running})], [])
        assert history.get_job(job.id).state == JobState.completed  # type: ignore[union-attr]
    finally:
        rl.close()
