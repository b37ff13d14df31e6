"""Shared fixtures: a real redis-server per test session (flushed per test), and
an empty database of each supported kind."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from myspinbot.redisserver import EmbeddedRedis
from tests.support import TEST_TRITON_REPOSITORY, RunningPlatform

# Triton fixtures (exported tiny repository, tritonserver, trained LoRAs) for any test.
pytest_plugins = ["tests.triton_support"]


@pytest.fixture(scope="session", autouse=True)
def _test_triton_repository() -> Iterator[None]:
    """The tiny export the test platforms share (tests/support.py) goes with the run."""
    yield
    shutil.rmtree(TEST_TRITON_REPOSITORY, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`myspinbot up` with status, ws-relay and the scripted test job function."""
    p = RunningPlatform(tmp_path_factory.mktemp("platform")).start()
    yield p
    assert p.stop() == 0, "myspinbot up did not exit cleanly"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    yield server.start()
    server.stop()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    # A repair thread an earlier test left running would take this flush for a Redis that
    # lost its data and re-queue this test's jobs: fail here, naming it, not later at random.
    leaked = [t.name for t in threading.enumerate() if t.name in ("redis-watch", "input-sweeper")]
    assert not leaked, f"an earlier test left repair threads running: {leaked}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


# CI provides this server; a missing one must fail the run, not skip half of it.
POSTGRES_URL = os.environ.get(
    "MYSPINBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of the parametrized kind."""
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: JobHistory must create it.
        yield f"sqlite:///{tmp_path / 'data' / 'myspinbot.db'}"
        return
    yield from _postgres_schema_url()


def _postgres_schema_url() -> Iterator[str]:
    """A throwaway schema in the shared `test` database, so tests never collide."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
