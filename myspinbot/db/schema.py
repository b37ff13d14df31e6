"""The SQL shape of the durable job history, as SQLAlchemy Core tables.

JSON values live in TEXT columns (see `JSONText`) rather than a native JSON
type so that SQLite and PostgreSQL store, compare and return them identically.
Timestamps are float epoch seconds, matching `Job` and `JobEvent`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class JSONText(TypeDecorator[Any]):
    """A JSON value serialised to TEXT; NULL stays NULL rather than becoming 'null'."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("progress", Double, nullable=False),
    Column("step", Text),
    Column("message", Text),
    Column("eta_seconds", Double),
    Column("attempt", Integer, nullable=False),
    Column("params", JSONText, nullable=False),
    Column("result", JSONText),
    Column("error", Text),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double),
    Column("updated_at", Double, nullable=False),
    # The user id of who submitted it (migration 4 gives older rows to the owner account).
    Column("owner", Text),
    Index("ix_jobs_created_at", "created_at"),
    Index("ix_jobs_state", "state"),
    Index("ix_jobs_owner_created_at", "owner", "created_at"),
)

job_events = Table(
    "job_events",
    metadata,
    # SQLite only auto-assigns an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("job_id", Text, ForeignKey("jobs.id"), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("progress", Double, nullable=False),
    Column("step", Text),
    Column("message", Text),
    Column("eta_seconds", Double),
    Column("error", Text),
    Column("result", JSONText),
    Column("metrics", JSONText),
    Column("ts", Double, nullable=False),
    # Re-delivered events (the writer is at-least-once) are dropped against this.
    UniqueConstraint("job_id", "event_id", name="uq_job_events_job_id_event_id"),
    # (job_id, seq) serves "events of a job in order" without a sort step.
    Index("ix_job_events_job_id_seq", "job_id", "seq"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("job_id", Text),
    Column("base_model", Text),
    Column("trigger_token", Text),
    Column("artifacts", JSONText, nullable=False),
    Column("metadata", JSONText, nullable=False),
    # The user id of who trained it (the training job's owner).
    Column("owner", Text),
    Index("ix_profiles_owner", "owner"),
)

# --- accounts (issue 11): who may use the platform ------------------------------------------
users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("role", Text, nullable=False),  # 'admin' | 'member'
    Column("created_at", Double, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    # sha256 hex of the token: the plain token is shown once and never stored.
    Column("token_hash", Text, nullable=False, unique=True),
    # 'api' (a Bearer token) or 'login' (a one-time link token, only exchanged for a session).
    Column("purpose", Text, nullable=False, server_default="api"),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double),
    Column("revoked_at", Double),
    Index("ix_api_tokens_user_id", "user_id"),
)

sessions = Table(
    "sessions",
    metadata,
    # sha256 hex of the cookie's value, so a copy of the database opens no session.
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_sessions_user_id", "user_id"),
)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Double, nullable=False),
)

# Files uploaded on their own for later jobs (portraits, narration recordings): who
# uploaded each, since the S3 object alone does not say. Job inputs need no row: they
# live under the job's prefix and belong to the job's owner.
uploads = Table(
    "uploads",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # 'portrait' | 'narration'
    Column("owner", Text),
    Column("created_at", Double, nullable=False),
    Index("ix_uploads_owner", "owner"),
)
