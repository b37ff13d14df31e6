"""The durable job history: jobs, their events and trained profiles in SQL.

Redis holds the live state; this is the record that survives restarts. A single
writer calls `record` with batches; everything else only reads.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from myspinbot.db.migrations import migrate
from myspinbot.db.schema import job_events as events_table
from myspinbot.db.schema import jobs as jobs_table
from myspinbot.db.schema import profiles as profiles_table
from myspinbot.db.schema import uploads as uploads_table
from myspinbot.jobs.models import TERMINAL_STATES, Job, JobEvent, now

_SQLITE_PRAGMAS = (
    # Set first: switching to WAL needs a lock another process may briefly hold.
    "PRAGMA busy_timeout = 10000",
    # Readers (gateway) never block the writer and vice versa.
    "PRAGMA journal_mode = WAL",
    # In WAL mode NORMAL is still corruption-safe; it only risks the last commits on power loss.
    "PRAGMA synchronous = NORMAL",
    # SQLite ignores foreign keys unless asked; enforce them as PostgreSQL does.
    "PRAGMA foreign_keys = ON",
)

# Events are read without their storage sequence number, which the model does not have.
_EVENT_COLUMNS = [c for c in events_table.c if c.name != "seq"]


class ProfileRecord(BaseModel):
    """A trained avatar profile and where its artifacts are."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    name: str
    created_at: float = Field(default_factory=now)
    job_id: str | None = None
    base_model: str | None = None
    trigger_token: str | None = None
    artifacts: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    owner: str | None = None  # user id of who trained it

    model_config = ConfigDict(populate_by_name=True)


def _execute_while_locked(cursor: Any, sql: str, timeout_s: float = 10.0) -> None:
    """Run `sql`, retrying while the database is locked.

    Switching a new database to WAL can fail with "database is locked" without
    consulting busy_timeout (SQLite skips the busy handler where waiting could
    deadlock), which is what happens when every process opens it at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            _execute_while_locked(cursor, pragma)
    finally:
        cursor.close()


def _create_engine(url: str) -> Engine:
    sa_url = make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        # The writer is long-lived; survive a database restart between batches.
        return create_engine(sa_url, pool_pre_ping=True)
    database = sa_url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # The single writer and the request handlers share the pool across threads.
    engine = create_engine(sa_url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# Other SQL users (accounts) open their engine the same way.
create_db_engine = _create_engine


def _insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT; both backends spell it the same way."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(
        f"job history supports SQLite and PostgreSQL, not {dialect!r}: check MYSPINBOT_DATABASE_URL"
    )


def _upsert(
    dialect: str, table: Table, where: Callable[[Any], ColumnElement[bool]] | None = None
) -> postgresql.Insert | sqlite.Insert:
    """INSERT ... ON CONFLICT (pk) DO UPDATE every other column [WHERE where(excluded)].
    A NULL owner never replaces a stored one (a snapshot of a job from before accounts,
    still live in Redis, must not undo its adoption by the owner account)."""
    stmt = _insert(dialect, table)
    keys = [c.name for c in table.primary_key.columns]
    updates: dict[str, Any] = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys}
    if "owner" in updates:
        updates["owner"] = func.coalesce(stmt.excluded.owner, table.c.owner)
    condition = None if where is None else where(stmt.excluded)
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=condition)


_TERMINAL = [s.value for s in TERMINAL_STATES]


def _snapshot_moves_forward(new: Any) -> ColumnElement[bool]:
    """A job snapshot replaces the stored one unless it would take a finished job back
    (a late or replayed write): only a retry, with a higher attempt, restarts it."""
    old = jobs_table.c
    # Plain comparisons, not NOT IN: an expanding IN cannot run in executemany.
    return or_(
        and_(*(old.state != state for state in _TERMINAL)),
        new.attempt > old.attempt,
        new.state == old.state,
    )


def _job(row: Row[Any]) -> Job:
    return Job.model_validate(dict(row._mapping))


class JobHistory:
    """Jobs, job events and profiles in SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self._engine = _create_engine(url)
        migrate(self._engine)
        dialect = self._engine.dialect.name
        # Written from every event a job gets, in any order a retry or repair brings:
        # idempotent, and never backwards.
        self._upsert_jobs = _upsert(dialect, jobs_table, _snapshot_moves_forward)
        self._upsert_profiles = _upsert(dialect, profiles_table)
        self._insert_events = _insert(dialect, events_table).on_conflict_do_nothing(
            index_elements=["job_id", "event_id"]
        )

    # --- writing -----------------------------------------------------------------------

    def record(self, jobs: Sequence[Job], events: Sequence[JobEvent]) -> None:
        """Upsert `jobs` and add `events` (dropping ones already stored) atomically."""
        # The last copy of a job in the batch is its newest state.
        latest = {job.id: job for job in jobs}
        # mode="json" hands the driver plain str/float/dict, not enums.
        job_rows = [job.model_dump(mode="json") for job in latest.values()]
        event_rows = [e.model_dump(mode="json") for e in events]
        if not job_rows and not event_rows:
            return
        with self._engine.begin() as conn:
            # Jobs first: events reference them.
            if job_rows:
                conn.execute(self._upsert_jobs, job_rows)
            if event_rows:
                conn.execute(self._insert_events, event_rows)

    def save_profile(self, profile: ProfileRecord) -> None:
        with self._engine.begin() as conn:
            conn.execute(self._upsert_profiles, [profile.model_dump(mode="json")])

    # --- reading -----------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
        return None if row is None else _job(row)

    def list_jobs(
        self,
        limit: int = 20,
        offset: int = 0,
        type: str | None = None,
        state: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and how many jobs match in all (`owner`: only
        that user's)."""
        where: list[ColumnElement[bool]] = []
        if owner is not None:
            where.append(jobs_table.c.owner == owner)
        if type is not None:
            where.append(jobs_table.c.type == type)
        if state is not None:
            where.append(jobs_table.c.state == state)
        page = (
            select(jobs_table)
            .where(*where)
            .order_by(jobs_table.c.created_at.desc(), jobs_table.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(jobs_table).where(*where)
        with self._engine.connect() as conn:
            rows = conn.execute(page).all()
            total = conn.execute(count).scalar_one()
        return [_job(row) for row in rows], total

    def unfinished_jobs(self, limit: int = 100_000) -> list[Job]:
        """Jobs whose last recorded state is not terminal (for the start-up repair)."""
        query = (
            select(jobs_table)
            .where(jobs_table.c.state.not_in(_TERMINAL))
            .order_by(jobs_table.c.created_at)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).all()]

    def job_events(self, job_id: str, limit: int = 1000) -> list[JobEvent]:
        """A job's events in the order they were recorded."""
        query = (
            select(*_EVENT_COLUMNS)
            .where(events_table.c.job_id == job_id)
            .order_by(events_table.c.seq)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [JobEvent.model_validate(dict(row._mapping)) for row in rows]

    def get_profile(self, profile_id: str) -> ProfileRecord | None:
        query = select(profiles_table).where(profiles_table.c.id == profile_id)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else ProfileRecord.model_validate(dict(row._mapping))

    def list_profiles(self, owner: str | None = None) -> list[ProfileRecord]:
        """All profiles (`owner`: only that user's), newest first."""
        newest_first = (profiles_table.c.created_at.desc(), profiles_table.c.id.desc())
        query = select(profiles_table).order_by(*newest_first)
        if owner is not None:
            query = query.where(profiles_table.c.owner == owner)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ProfileRecord.model_validate(dict(row._mapping)) for row in rows]

    # --- deleting (myspinbot/deletion.py) -------------------------------------------------

    def jobs_mentioning(self, fragment: str) -> list[Job]:
        """Jobs whose stored params contain `fragment` verbatim, e.g. `"profileId":"<id>"`.
        Params are stored as compact JSON text (JSONText), so a key-value pair is a plain
        substring on SQLite and PostgreSQL alike; ids are random, so this finds no stranger."""
        params = type_coerce(jobs_table.c.params, Text)
        query = select(jobs_table).where(params.contains(fragment, autoescape=True))
        with self._engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).all()]

    def finished_before(self, cutoff: float, limit: int = 500) -> list[Job]:
        """Finished jobs (completed, failed, cancelled) that ended before `cutoff`, oldest
        first (a job with no end time counts from its last update)."""
        ended = func.coalesce(jobs_table.c.finished_at, jobs_table.c.updated_at)
        query = (
            select(jobs_table)
            .where(jobs_table.c.state.in_(_TERMINAL), ended < cutoff)
            .order_by(ended)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).all()]

    def uploads_owned(self, owner: str) -> list[tuple[str, str]]:
        """(id, kind) of every upload (portrait, narration) `owner` made."""
        query = select(uploads_table.c.id, uploads_table.c.kind).where(
            uploads_table.c.owner == owner
        )
        with self._engine.connect() as conn:
            return [(str(row.id), str(row.kind)) for row in conn.execute(query).all()]

    def uploads_created(self, upload_ids: Sequence[str]) -> dict[str, float]:
        """When each of these uploads was made, for those with a record."""
        if not upload_ids:
            return {}
        query = select(uploads_table.c.id, uploads_table.c.created_at).where(
            uploads_table.c.id.in_(list(upload_ids))
        )
        with self._engine.connect() as conn:
            return {str(row.id): float(row.created_at) for row in conn.execute(query).all()}

    def delete_records(
        self,
        job_ids: Sequence[str],
        profile_ids: Sequence[str] = (),
        upload_ids: Sequence[str] = (),
    ) -> int:
        """Remove these jobs (with their events), profiles and uploads' records in one
        transaction; returns how many rows went."""
        removed = 0
        with self._engine.begin() as conn:
            if job_ids:
                ids = list(job_ids)
                # Events first: they reference their job.
                events_of = events_table.c.job_id.in_(ids)
                removed += conn.execute(delete(events_table).where(events_of)).rowcount
                removed += conn.execute(delete(jobs_table).where(jobs_table.c.id.in_(ids))).rowcount
            if profile_ids:
                where = profiles_table.c.id.in_(list(profile_ids))
                removed += conn.execute(delete(profiles_table).where(where)).rowcount
            if upload_ids:
                where = uploads_table.c.id.in_(list(upload_ids))
                removed += conn.execute(delete(uploads_table).where(where)).rowcount
        return removed

    # --- lifecycle ---------------------------------------------------------------------

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()
