"""Deletion's bookkeeping against the real servers, without the whole platform: jobs applied
by the real relay to Redis and SQL (SQLite and PostgreSQL), objects in the embedded S3.
The platform-level proof (a trained and used profile, Triton, old links) is
tests/test_deletion.py."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from itertools import count

import pytest
import redis

from myspinbot import keys
from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.db.uploads import Uploads
from myspinbot.deletion import Deletion, DeletionRefused, HistoryCatchingUp
from myspinbot.jobs import events
from myspinbot.jobs.models import Job, JobState
from myspinbot.jobs.relay import Relay
from myspinbot.retention import DAY_S, sweep
from myspinbot.settings import Settings
from myspinbot.storage import ArtifactStore, EmbeddedS3

_ids = count(1)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    keys = ("deletion", secrets.token_urlsafe(24))
    with EmbeddedS3(
        tmp_path_factory.mktemp("s3"), access_key=keys[0], secret_key=keys[1]
    ) as server:
        yield server


@pytest.fixture
def store(s3: EmbeddedS3) -> ArtifactStore:
    st = ArtifactStore(s3.endpoint, "deletion", s3.access_key, s3.secret_key)
    st.ensure_bucket()
    for key in st.list_keys(""):
        st.delete_keys([key])
    return st


@pytest.fixture
def history(db_url: str) -> Iterator[JobHistory]:
    h = JobHistory(db_url)
    yield h
    h.close()


@pytest.fixture
def relay(r: redis.Redis, history: JobHistory) -> Iterator[Relay]:
    rl = Relay(r, history, Settings())
    yield rl
    rl.close()


def run(relay: Relay, job: Job, *states: JobState, new: bool = True) -> None:
    """The job's events through the real relay: created (for a `new` job), then each state."""
    evs = [events.created(job)] if new else []
    evs += [events.state(job.id, s, attempt=1) for s in states]
    applied = relay.apply([(f"{next(_ids)}-0", ev) for ev in evs])
    assert all(a.status == "applied" for a in applied), applied


def dump(r: redis.Redis) -> str:
    """Every key with its value, as text."""
    out = []
    for key in r.scan_iter(count=1000):
        kind = str(r.type(key))
        value: object = ""
        if kind == "string":
            value = r.get(key)
        elif kind == "hash":
            value = r.hgetall(key)
        elif kind == "stream":
            value = r.xrange(key)
        elif kind == "zset":
            value = r.zrange(key, 0, -1)
        out.append(f"{key}={value}")
    return "\n".join(out)


def rows(history: JobHistory, job_id: str) -> bool:
    return history.get_job(job_id) is not None or bool(history.job_events(job_id))


def test_a_job_goes_from_redis_sql_and_s3_and_a_shared_upload_with_its_last_job(
    r: redis.Redis, relay: Relay, history: JobHistory, store: ArtifactStore
) -> None:
    portrait = "a" * 32
    options = {"portrait": "upload", "portraitImage": portrait}
    first = Job(type="generate", params={"mode": "direct", "options": options})
    second = Job(type="generate", params={"mode": "direct", "options": options})
    run(relay, first, JobState.running, JobState.failed)
    run(relay, second, JobState.running, JobState.completed)
    image = b"portrait bytes"
    store.put_bytes(f"portraits/{portrait}", image)
    cache = f"stage-cache/{hashlib.sha256(image).hexdigest()}-512-realesrgan.png"
    store.put_bytes(cache, b"upscaled")
    for job in (first, second):
        store.put_bytes(f"generations/{job.id}/video.mp4", b"video")
    dead = keys.dead_letter(keys.job_stream("generate"))
    r.xadd(dead, {"body": json.dumps({"id": first.id, "type": "generate"}), "error": "boom"})
    r.set(keys.idempotency("retry-me"), f"{first.id} somehash")
    assert first.id in dump(r) and rows(history, first.id)

    deletion = Deletion(r, history, store)
    gone = deletion.job(first.id)
    assert gone is not None and gone.objects == 1  # its video; the upload is shared
    assert first.id not in dump(r) and not rows(history, first.id)
    left = [f"generations/{second.id}/video.mp4", cache, f"portraits/{portrait}"]
    assert store.list_keys("") == sorted(left)
    assert deletion.job(first.id) is None  # a second time: nothing there

    assert deletion.job(second.id) is not None
    assert store.list_keys("") == []  # the upload went with the last job naming it
    assert second.id not in dump(r) and not rows(history, second.id)


def test_unfinished_jobs_and_an_unsettled_history_refuse(
    r: redis.Redis, relay: Relay, history: JobHistory, store: ArtifactStore
) -> None:
    running = Job(type="train", params={"name": "Ada"})
    run(relay, running, JobState.running)
    deletion = Deletion(r, history, store)
    with pytest.raises(DeletionRefused, match="cancel it first"):
        deletion.job(running.id)
    run(relay, running, JobState.cancelled, new=False)
    r.xadd(keys.HISTORY_OUTBOX, {"batch": "[]"})
    with pytest.raises(HistoryCatchingUp, match="try the deletion again"):
        deletion.job(running.id)
    r.delete(keys.HISTORY_OUTBOX)
    assert deletion.job(running.id) is not None


def test_retention_deletes_what_ended_before_the_cutoff_only(
    r: redis.Redis, relay: Relay, history: JobHistory, store: ArtifactStore
) -> None:
    old, new = (Job(type="generate", params={"mode": "direct"}) for _ in "ab")
    for job in (old, new):
        run(relay, job, JobState.running, JobState.completed)
        store.put_bytes(f"generations/{job.id}/video.mp4", b"video")
    upload = "narrations/" + "b" * 32
    store.put_bytes(upload, b"an upload no job names")
    # `old` ended two days ago (the history's upsert takes a finished job's own snapshot).
    ended = history.get_job(old.id)
    assert ended is not None
    two_days_ago = time.time() - 2 * DAY_S
    history.record([ended.model_copy(update={"finished_at": two_days_ago})], [])

    swept = sweep(Deletion(r, history, store), retention_s=DAY_S)
    assert swept.jobs == [old.id] and swept.uploads == []
    assert history.get_job(old.id) is None and history.get_job(new.id) is not None
    assert store.list_keys("") == sorted([f"generations/{new.id}/video.mp4", upload])

    # Two days on, the rest is a day old too.
    swept = sweep(Deletion(r, history, store), retention_s=DAY_S, now=time.time() + 2 * DAY_S)
    assert swept.jobs == [new.id] and swept.uploads == [upload]
    assert store.list_keys("") == []


def test_an_account_takes_everything_it_owns_and_nothing_else(
    r: redis.Redis, relay: Relay, history: JobHistory, store: ArtifactStore, db_url: str
) -> None:
    portrait = "c" * 32
    mine = Job(type="generate", owner="u1", params={"options": {"portraitImage": portrait}})
    theirs = Job(type="generate", owner="u2", params={"mode": "direct"})
    for job in (mine, theirs):
        run(relay, job, JobState.running, JobState.completed)
        store.put_bytes(f"generations/{job.id}/video.mp4", b"video")
    profile = ProfileRecord(id="d" * 32, name="Ada", owner="u1")
    history.save_profile(profile)
    store.put_bytes(f"profiles/{profile.id}/portrait.png", b"png")
    uploads = Uploads.open(db_url)
    try:
        uploads.add("portrait", portrait, "u1")
        store.put_bytes(f"portraits/{portrait}", b"portrait")
        deletion = Deletion(r, history, store)

        busy = Job(type="train", owner="u1", params={"name": "Ada"})
        run(relay, busy, JobState.running)
        with pytest.raises(DeletionRefused, match="cancel them"):
            deletion.account("u1")
        assert len(store.list_keys("")) == 4  # refused before anything went
        run(relay, busy, JobState.cancelled, new=False)

        gone = deletion.account("u1")
        assert sorted(gone.jobs) == sorted([mine.id, busy.id])
        assert store.list_keys("") == [f"generations/{theirs.id}/video.mp4"]
        assert history.get_profile(profile.id) is None
        assert uploads.get("portrait", portrait) is None
        assert history.get_job(theirs.id) is not None
        assert "u1" not in dump(r)
    finally:
        uploads.close()


def test_a_deleted_jobs_delivered_stream_entries_go_and_undelivered_ones_stay(
    r: redis.Redis, relay: Relay, history: JobHistory, store: ArtifactStore
) -> None:
    """A stream's own trim keeps its newest delivered entry; the deletion removes the job's
    entries that every group has acknowledged, and nothing something still acts on."""
    job = Job(type="generate", params={"mode": "direct"})
    run(relay, job, JobState.running, JobState.completed)
    stream = keys.EVENTS
    r.xgroup_create(stream, "ws-relay", id="0", mkstream=True)
    acked = r.xadd(stream, {"body": json.dumps({"jobId": job.id, "state": "completed"})})
    r.xreadgroup("ws-relay", "c1", {stream: ">"}, count=1)
    r.xack(stream, "ws-relay", acked)
    pending = r.xadd(stream, {"body": json.dumps({"jobId": job.id, "state": "completed"})})
    r.xreadgroup("ws-relay", "c1", {stream: ">"}, count=1)  # delivered, not acknowledged
    undelivered = r.xadd(stream, {"body": json.dumps({"jobId": job.id, "kind": "late"})})

    assert Deletion(r, history, store).job(job.id) is not None
    assert [e for e, _ in r.xrange(stream)] == [pending, undelivered]
