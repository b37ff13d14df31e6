"""JobHistory against both supported backends: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.db.migrations import MIGRATIONS
from myspinbot.jobs.models import EventKind, Job, JobEvent, JobState


@pytest.fixture
def history(db_url: str) -> Iterator[JobHistory]:
    h = JobHistory(db_url)
    yield h
    h.close()


def make_job(created_at: float, **fields: object) -> Job:
    return Job.model_validate(
        {"type": "train", "created_at": created_at, "updated_at": created_at, **fields}
    )


def make_event(job: Job, event_id: str, ts: float, **fields: object) -> JobEvent:
    return JobEvent.model_validate(
        {
            "job_id": job.id,
            "event_id": event_id,
            "kind": EventKind.progress,
            "state": job.state,
            "progress": job.progress,
            "ts": ts,
            **fields,
        }
    )


def applied_versions(url: str) -> list[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
    finally:
        engine.dispose()


# --- migrations ---------------------------------------------------------------------------


def test_migrate_is_idempotent(db_url: str) -> None:
    JobHistory(db_url).close()
    JobHistory(db_url).close()
    assert sorted(applied_versions(db_url)) == [m.version for m in MIGRATIONS]


def test_concurrent_startup_migrates_once(db_url: str) -> None:
    def start() -> None:
        JobHistory(db_url).close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(start) for _ in range(4)]:
            future.result()
    assert sorted(applied_versions(db_url)) == [m.version for m in MIGRATIONS]


# --- jobs ---------------------------------------------------------------------------------


def test_record_and_get_job_roundtrip(history: JobHistory) -> None:
    job = make_job(
        1000.5,
        state=JobState.completed,
        progress=100.0,
        step="render",
        message="done",
        eta_seconds=0.0,
        attempt=2,
        params={"prompt": "hi", "steps": 30, "nested": {"a": [1, 2.5, None]}},
        result={"artifacts": [{"name": "video.mp4", "key": "k/video.mp4"}]},
        started_at=1001.25,
        finished_at=1010.75,
    )
    history.record([job], [])
    assert history.get_job(job.id) == job


def test_nullable_json_stays_none(history: JobHistory) -> None:
    job = make_job(1.0)
    history.record([job], [])
    stored = history.get_job(job.id)
    assert stored is not None
    assert stored.result is None
    assert stored.params == {}


def test_upsert_updates_state(history: JobHistory) -> None:
    job = make_job(1.0)
    history.record([job], [])
    done = job.model_copy(
        update={"state": JobState.failed, "error": "boom", "progress": 40.0, "updated_at": 2.0}
    )
    history.record([done], [])
    assert history.get_job(job.id) == done
    assert history.list_jobs()[1] == 1


def test_last_copy_of_a_job_in_a_batch_wins(history: JobHistory) -> None:
    job = make_job(1.0)
    running = job.model_copy(update={"state": JobState.running})
    history.record([job, running], [])
    stored = history.get_job(job.id)
    assert stored is not None
    assert stored.state is JobState.running


def test_unknown_ids_return_none(history: JobHistory) -> None:
    assert history.get_job("nope") is None
    assert history.get_profile("nope") is None
    assert history.job_events("nope") == []


def test_list_jobs_orders_pages_counts_and_filters(history: JobHistory) -> None:
    jobs = [
        make_job(10.0, id="a", type="train", state=JobState.completed),
        make_job(20.0, id="b", type="generate", state=JobState.running),
        make_job(30.0, id="c", type="generate", state=JobState.completed),
        # Same created_at as "c": id breaks the tie, descending.
        make_job(30.0, id="d", type="train", state=JobState.queued),
    ]
    history.record(jobs, [])

    page, total = history.list_jobs()
    assert [j.id for j in page] == ["d", "c", "b", "a"]
    assert total == 4

    page, total = history.list_jobs(limit=2, offset=1)
    assert [j.id for j in page] == ["c", "b"]
    assert total == 4

    page, total = history.list_jobs(type="generate")
    assert [j.id for j in page] == ["c", "b"]
    assert total == 2

    page, total = history.list_jobs(state="completed")
    assert [j.id for j in page] == ["c", "a"]
    assert total == 2

    page, total = history.list_jobs(type="train", state="completed")
    assert [j.id for j in page] == ["a"]
    assert total == 1

    page, total = history.list_jobs(offset=10)
    assert page == []
    assert total == 4


# --- events -------------------------------------------------------------------------------


def test_job_events_in_insertion_order(history: JobHistory) -> None:
    job = make_job(1.0)
    # Timestamps deliberately out of order: order is by recording, not by ts.
    first = make_event(job, "e1", 5.0, kind=EventKind.created, state=JobState.queued)
    second = make_event(job, "e2", 3.0, progress=50.0, step="train", eta_seconds=12.5)
    history.record([job], [first, second])
    third = make_event(
        job, "e3", 4.0, kind=EventKind.state, state=JobState.completed, result={"ok": True}
    )
    history.record([job], [third])

    assert history.job_events(job.id) == [first, second, third]
    assert history.job_events(job.id, limit=2) == [first, second]


def test_duplicate_events_are_ignored(history: JobHistory) -> None:
    job = make_job(1.0)
    events = [make_event(job, f"e{i}", float(i)) for i in range(3)]
    history.record([job], events)
    history.record([job], events)
    # Also a duplicate inside one batch.
    history.record([job], [events[0], events[0]])
    assert history.job_events(job.id) == events


def test_events_are_kept_per_job(history: JobHistory) -> None:
    one, two = make_job(1.0), make_job(2.0)
    # The same event id under different jobs is not a duplicate.
    history.record([one, two], [make_event(one, "e1", 1.0), make_event(two, "e1", 1.0)])
    assert [e.job_id for e in history.job_events(one.id)] == [one.id]
    assert [e.job_id for e in history.job_events(two.id)] == [two.id]


def test_history_survives_restart(db_url: str) -> None:
    job = make_job(1.0, params={"x": 1})
    event = make_event(job, "e1", 1.0)
    profile = ProfileRecord(name="alice", created_at=1.0)
    first = JobHistory(db_url)
    first.record([job], [event])
    first.save_profile(profile)
    first.close()

    second = JobHistory(db_url)
    try:
        assert second.get_job(job.id) == job
        assert second.job_events(job.id) == [event]
        assert second.get_profile(profile.id) == profile
    finally:
        second.close()


def test_record_nothing_is_a_no_op(history: JobHistory) -> None:
    history.record([], [])
    assert history.list_jobs() == ([], 0)


# --- profiles -----------------------------------------------------------------------------


def test_profiles_save_get_list(history: JobHistory) -> None:
    job = make_job(1.0)
    history.record([job], [])
    older = ProfileRecord(id="p1", name="alice", created_at=10.0)
    newer = ProfileRecord(
        id="p2",
        name="bob",
        created_at=20.0,
        job_id=job.id,
        base_model="sdxl",
        trigger_token="sks",
        artifacts=[{"name": "lora.safetensors", "key": "profiles/p2/lora.safetensors"}],
        metadata={"images": 12, "tags": ["a", "b"]},
    )
    history.save_profile(older)
    history.save_profile(newer)

    assert history.get_profile("p2") == newer
    assert history.list_profiles() == [newer, older]

    renamed = older.model_copy(update={"name": "alice v2"})
    history.save_profile(renamed)
    assert history.get_profile("p1") == renamed
    assert len(history.list_profiles()) == 2


def test_ping(history: JobHistory) -> None:
    history.ping()


def test_old_databases_gain_the_event_metrics_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a database as migration 1 left it, before `metrics`
        conn.execute(
            sa.text(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at FLOAT)"
            )
        )
        conn.execute(sa.text("INSERT INTO schema_migrations VALUES (1, 0)"))
        conn.execute(
            sa.text(
                "CREATE TABLE jobs (id TEXT PRIMARY KEY, type TEXT, state TEXT, "
                "progress FLOAT, step TEXT, message TEXT, eta_seconds FLOAT, "
                "attempt INTEGER, params TEXT, result TEXT, error TEXT, "
                "created_at FLOAT, started_at FLOAT, finished_at FLOAT, "
                "updated_at FLOAT)"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TABLE job_events (seq INTEGER PRIMARY KEY, job_id TEXT, "
                "event_id TEXT, kind TEXT, state TEXT, progress FLOAT, step TEXT, "
                "message TEXT, eta_seconds FLOAT, error TEXT, result TEXT, ts FLOAT, "
                "UNIQUE (job_id, event_id))"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TABLE profiles (id TEXT PRIMARY KEY, name TEXT, "
                "created_at FLOAT, job_id TEXT, base_model TEXT, trigger_token TEXT, "
                "artifacts TEXT, metadata TEXT)"
            )
        )
    engine.dispose()
    history = JobHistory(url)
    job = make_job(1.0)
    event = make_event(job, "1-0", 1.0).model_copy(update={"metrics": {"loss": 0.5}})
    history.record([job], [event])
    assert history.job_events(job.id)[0].metrics == {"loss": 0.5}
    assert applied_versions(url) == [m.version for m in MIGRATIONS]


def test_old_results_lose_their_stored_signed_links(db_url: str) -> None:
    """Results recorded before links were signed per read held signed URLs: the
    migration keeps their keys and drops the links, in jobs and in their events."""
    url = "http://s3.example/b/generations/j/video.mp4?X-Amz-Signature=abc123"
    video = {"name": "video.mp4", "key": "generations/j/video.mp4", "size": 3, "url": url}
    old = {"video": video, "artifacts": [video], "durationSeconds": 2.0}
    h = JobHistory(db_url)
    job = make_job(1.0, state=JobState.completed, result=old)
    done = make_event(job, "e1", 2.0, kind=EventKind.state, state=JobState.completed, result=old)
    other = make_job(2.0, state=JobState.completed, result={"echo": "unchanged"})
    h.record([job, other], [done])
    h.close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # as if this database predates the step
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE version = 5"))
    engine.dispose()

    h = JobHistory(db_url)
    try:
        kept = {"name": "video.mp4", "key": "generations/j/video.mp4", "size": 3}
        stored = h.get_job(job.id)
        assert stored is not None and stored.result == {
            "video": kept,
            "artifacts": [kept],
            "durationSeconds": 2.0,
        }
        assert h.job_events(job.id)[0].result == stored.result
        unchanged = h.get_job(other.id)
        assert unchanged is not None and unchanged.result == {"echo": "unchanged"}
    finally:
        h.close()
