"""A tiny ordered migration runner: each step runs once, in its own transaction.

Every step takes a database-wide lock first, so several processes starting at
once (gateway, function replicas) apply each step exactly once between them.

`schema.py` always describes the current shape and step 1 builds from it, so a
fresh database gets the latest tables at once. A later step must therefore
bring *old* databases forward and be a no-op where the change is already there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from sqlalchemy import Connection, Engine, Text, inspect, select, text, type_coerce, update

from myspinbot.db.schema import (
    api_tokens,
    job_events,
    jobs,
    metadata,
    profiles,
    schema_migrations,
    sessions,
    uploads,
    users,
)
from myspinbot.jobs.models import stored_result

log = logging.getLogger(__name__)

# Any fixed 64-bit key; it only has to be the same in every process.
_PG_LOCK_KEY = 0x6D7973_70696E_62


class Migration(NamedTuple):
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=[jobs, job_events, profiles])


def _add_event_metrics(conn: Connection) -> None:
    if "metrics" not in {c["name"] for c in inspect(conn).get_columns("job_events")}:
        conn.execute(text("ALTER TABLE job_events ADD COLUMN metrics TEXT"))


def _add_owners(conn: Connection) -> None:
    """Owners on jobs and profiles, and the uploads table (issue 11). Rows from before
    accounts get the owner account later, by `adopt_unowned` (it may not exist yet)."""
    inspector = inspect(conn)
    for table, index in ((jobs, "ix_jobs_owner_created_at"), (profiles, "ix_profiles_owner")):
        if "owner" not in {c["name"] for c in inspector.get_columns(table.name)}:
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN owner TEXT"))
        if index not in {i["name"] for i in inspector.get_indexes(table.name)}:
            next(i for i in table.indexes if i.name == index).create(conn)
    metadata.create_all(conn, tables=[uploads], checkfirst=True)


def _create_accounts(conn: Connection) -> None:
    metadata.create_all(conn, tables=[users, api_tokens, sessions], checkfirst=True)


def _drop_stored_links(conn: Connection) -> None:
    """Results written before links were signed per read held signed URLs (living up to
    7 days); keep their artifacts' keys only (docs/security.md, Links)."""
    for table, pk in ((jobs, jobs.c.id), (job_events, job_events.c.seq)):
        # Only rows with a `url` in their result are read and rewritten.
        linked = type_coerce(table.c.result, Text).like('%"url":%')
        for row_id, result in conn.execute(select(pk, table.c.result).where(linked)).all():
            cleaned = stored_result(result)
            if cleaned != result:
                conn.execute(update(table).where(pk == row_id).values(result=cleaned))


MIGRATIONS: list[Migration] = [
    Migration(1, "jobs, job_events and profiles", _create_tables),
    Migration(2, "job_events.metrics", _add_event_metrics),
    Migration(3, "users, api_tokens and sessions", _create_accounts),
    Migration(4, "owners of jobs, profiles and uploads", _add_owners),
    # Numbered apart from the other steps of the security work (owners: 4), so the
    # branches merge without renumbering; the runner applies steps in list order.
    Migration(5, "results keep artifact keys, not signed links", _drop_stored_links),
]


def owner_account(conn: Connection) -> str | None:
    """The owner account's id: the first admin (None before accounts exist)."""
    if not inspect(conn).has_table("users"):
        return None
    row = conn.execute(
        text("SELECT id FROM users WHERE role = 'admin' ORDER BY created_at, id LIMIT 1")
    ).first()
    return None if row is None else str(row[0])


def adopt_unowned(conn: Connection) -> int:
    """Give rows without an owner (history from before accounts) to the owner account;
    the number of rows adopted. Idempotent and cheap once done (indexed owner columns);
    run at every start, as the owner account appears after the migration on a first
    `up`."""
    owner = owner_account(conn)
    if owner is None:
        return 0
    adopted = 0
    for table in (jobs, profiles, uploads):
        res = conn.execute(table.update().where(table.c.owner.is_(None)).values(owner=owner))
        adopted += res.rowcount or 0
    if adopted:
        log.info("gave %d rows from before accounts to the owner account %s", adopted, owner)
    return adopted


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the migration lock until it ends."""
    if engine.dialect.name == "sqlite":
        # pysqlite would begin lazily (and only before DML); take the write lock up front.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield conn


def adopt_history(engine: Engine) -> int:
    """`adopt_unowned` in its own locked transaction (the start-up step that has just made
    the owner account runs it, so the history is the owner's before any server starts)."""
    with _locked_transaction(engine) as conn:
        return adopt_unowned(conn)


def migrate(engine: Engine) -> None:
    """Apply the migrations this database has not seen yet, in order."""
    for migration in MIGRATIONS:
        with _locked_transaction(engine) as conn:
            schema_migrations.create(conn, checkfirst=True)
            done = select(schema_migrations.c.version).where(
                schema_migrations.c.version == migration.version
            )
            if conn.execute(done).first() is not None:
                continue
            log.info("applying migration %d: %s", migration.version, migration.description)
            migration.apply(conn)
            conn.execute(
                schema_migrations.insert().values(version=migration.version, applied_at=time.time())
            )
    with _locked_transaction(engine) as conn:
        adopt_unowned(conn)
