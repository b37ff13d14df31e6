"""Owners in the durable history: jobs and profiles carry who made them, lists narrow to
one owner, and history from before accounts goes to the owner account (the first admin)."""

from __future__ import annotations

from pathlib import Path

import redis
import sqlalchemy as sa

from myspinbot import keys
from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.db.uploads import Uploads
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState
from myspinbot.jobs.relay import Relay
from myspinbot.settings import Settings
from tests.jobs.test_relay import publish


def test_the_owner_goes_from_submit_to_redis_and_sql(r: redis.Redis, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    relay = Relay(r, JobHistory(settings.sqlalchemy_url), settings)
    try:
        mine, theirs = Job(type="generate", owner="alice"), Job(type="generate", owner="bob")
        relay.apply(
            [
                publish(r, events.created(mine)),
                publish(r, events.created(theirs)),
                publish(r, events.state(mine.id, JobState.completed, result={})),
            ]
        )
        assert r.hget(keys.job(mine.id), "owner") == "alice"
        stored = relay.history.get_job(mine.id)
        assert stored is not None and stored.owner == "alice"
        assert stored.status_view()["owner"] == "alice"
        page, total = relay.history.list_jobs(owner="bob")
        assert [j.id for j in page] == [theirs.id] and total == 1
        assert relay.history.list_jobs()[1] == 2
    finally:
        relay.close()


def test_profiles_and_uploads_have_owners(db_url: str) -> None:
    history = JobHistory(db_url)
    history.save_profile(ProfileRecord(id="p1", name="a", owner="alice"))
    history.save_profile(ProfileRecord(id="p2", name="b", owner="bob"))
    assert [p.id for p in history.list_profiles("alice")] == ["p1"]
    assert {p.id for p in history.list_profiles()} == {"p1", "p2"}
    uploads = Uploads.open(db_url)
    uploads.add("portrait", "u1", "alice")
    got = uploads.get("portrait", "u1")
    assert got is not None and got.owner == "alice"
    assert uploads.get("narration", "u1") is None  # an id names one kind of upload
    uploads.close()
    history.close()


OLD_TABLES = [  # a database as migration 2 left it, before owners
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at FLOAT)",
    "INSERT INTO schema_migrations VALUES (1, 0), (2, 0)",
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, type TEXT, state TEXT, progress FLOAT, "
    "step TEXT, message TEXT, eta_seconds FLOAT, attempt INTEGER, params TEXT, result TEXT, "
    "error TEXT, created_at FLOAT, started_at FLOAT, finished_at FLOAT, updated_at FLOAT)",
    "CREATE TABLE job_events (seq INTEGER PRIMARY KEY, job_id TEXT, event_id TEXT, "
    "kind TEXT, state TEXT, progress FLOAT, step TEXT, message TEXT, eta_seconds FLOAT, "
    "error TEXT, result TEXT, metrics TEXT, ts FLOAT, UNIQUE (job_id, event_id))",
    "CREATE TABLE profiles (id TEXT PRIMARY KEY, name TEXT, created_at FLOAT, job_id TEXT, "
    "base_model TEXT, trigger_token TEXT, artifacts TEXT, metadata TEXT)",
    "INSERT INTO jobs VALUES ('old-job', 'train', 'completed', 100, NULL, NULL, 0, 1, '{}', "
    "NULL, NULL, 1, 1, 2, 2)",
    "INSERT INTO profiles VALUES ('old-profile', 'x', 1, 'old-job', NULL, NULL, '[]', '{}')",
]


def test_history_from_before_accounts_goes_to_the_owner_account(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in OLD_TABLES:
            conn.execute(sa.text(statement))
    engine.dispose()

    # Upgraded before any account exists: the rows wait, unowned (admins only see them).
    history = JobHistory(url)
    old = history.get_job("old-job")
    assert old is not None and old.owner is None
    history.close()

    # The first start makes the owner account (an admin; a later admin is not the owner).
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT UNIQUE, "
                "role TEXT, created_at FLOAT)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO users (id, name, role, created_at) VALUES "
                "('m1', 'member', 'member', 1), ('owner1', 'owner', 'admin', 2), "
                "('a2', 'later admin', 'admin', 3)"
            )
        )
    engine.dispose()
    history = JobHistory(url)
    old = history.get_job("old-job")
    assert old is not None and old.owner == "owner1"
    profile = history.get_profile("old-profile")
    assert profile is not None and profile.owner == "owner1"
    # A snapshot of the job without an owner (live in Redis since before the upgrade)
    # does not take it away again.
    history.record([old.model_copy(update={"owner": None, "message": "later"})], [])
    again = history.get_job("old-job")
    assert again is not None and again.owner == "owner1" and again.message == "later"
    history.close()
