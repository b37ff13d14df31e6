"""The accounts service: users, API tokens, one-time login tokens and sessions in SQL.

Every method is a short synchronous transaction; the gateway calls them in a worker
thread. Credentials are looked up by their hash (see tokens.py), so verifying one is a
single indexed SELECT, and revoking one takes effect on the next request.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from myspinbot.accounts.models import (
    ROLES,
    AccountError,
    CreatedToken,
    Purpose,
    Role,
    Session,
    TokenInfo,
    User,
)
from myspinbot.accounts.outage import RecentlyVerified
from myspinbot.accounts.tokens import hash_secret, looks_like_token, new_secret
from myspinbot.db.history import create_db_engine
from myspinbot.db.migrations import migrate
from myspinbot.db.schema import api_tokens, sessions, users

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
TOKEN_NAME_MAX = 100
OWNER_NAME = "owner"


# The per-request lookups, built once (building a statement costs more than running it).
_ACTIVE_TOKEN = (
    select(users, api_tokens.c.id.label("token_id"), api_tokens.c.expires_at)
    .join(api_tokens, api_tokens.c.user_id == users.c.id)
    .where(
        api_tokens.c.token_hash == bindparam("hash"),
        api_tokens.c.purpose == bindparam("purpose"),
        api_tokens.c.revoked_at.is_(None),
        or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > bindparam("now")),
    )
)
_SESSION_USER = (
    select(users, sessions.c.expires_at)
    .join(sessions, sessions.c.user_id == users.c.id)
    .where(and_(sessions.c.id == bindparam("hash"), sessions.c.expires_at > bindparam("now")))
)


def _user(row: Any) -> User:
    return User(id=row.id, name=row.name, role=row.role)


def _token_info(row: Any) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user_id=row.user_id,
        user_name=row.user_name,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class Accounts:
    def __init__(self, engine: Engine, outage_grace_s: float = 0.0) -> None:
        """`outage_grace_s`: how long a credential SQL accepted keeps working while SQL
        cannot be reached (outage.py); 0 turns that off."""
        self.engine = engine
        self._recent = RecentlyVerified(outage_grace_s) if outage_grace_s > 0 else None

    @classmethod
    def open(cls, url: str) -> Accounts:
        """An engine of its own on `url`, migrated (for tools and start-up steps)."""
        engine = create_db_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- users ------------------------------------------------------------------------------
    def add_user(self, name: str, role: Role = "member") -> User:
        if not NAME_RE.fullmatch(name):
            raise AccountError(
                f"User name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', "
                "'@' or '-', starting with a letter or digit."
            )
        if role not in ROLES:
            raise AccountError(f"Role {role!r} does not exist; use 'admin' or 'member'.")
        user = User(id=uuid.uuid4().hex, name=name, role=role)
        with self.engine.begin() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise AccountError(f"A user named {name!r} already exists.", status=409)
            conn.execute(
                users.insert().values(id=user.id, name=name, role=role, created_at=time.time())
            )
        return user

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.created_at, users.c.name))
            return [_user(r) for r in rows]

    def get_user(self, user_id: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def find_user(self, name_or_id: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users).where(or_(users.c.name == name_or_id, users.c.id == name_or_id))
            ).first()
        return _user(row) if row else None

    def owner(self) -> User | None:
        """The first admin: the account `myspinbot up` created."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users).where(users.c.role == "admin").order_by(users.c.created_at).limit(1)
            ).first()
        return _user(row) if row else None

    def remove_user(self, user_id: str) -> bool:
        """Remove a user with their tokens and sessions; False if there was none.
        The last admin cannot be removed: nobody could manage the platform after."""
        with self.engine.begin() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
            if row is None:
                return False
            if row.role == "admin":
                admins = conn.execute(
                    select(func.count()).select_from(users).where(users.c.role == "admin")
                ).scalar_one()
                if admins <= 1:
                    raise AccountError(
                        f"{row.name!r} is the last admin; make another user admin first.",
                        status=409,
                    )
            # Explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign keys on.
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
            conn.execute(delete(users).where(users.c.id == user_id))
        return True

    # --- API tokens ---------------------------------------------------------------------------
    def create_token(
        self,
        user: User,
        name: str = "api",
        expires_at: float | None = None,
        *,
        purpose: Purpose = "api",
    ) -> CreatedToken:
        """A new token for `user`; the plain value is in the result and nowhere else."""
        name = name.strip()
        if not name or len(name) > TOKEN_NAME_MAX:
            raise AccountError(f"A token name is 1-{TOKEN_NAME_MAX} characters.")
        now = time.time()
        if expires_at is not None and expires_at <= now:
            raise AccountError("The expiry must be in the future.")
        secret = new_secret()
        token_id = uuid.uuid4().hex[:16]
        with self.engine.begin() as conn:
            if not conn.execute(select(users.c.id).where(users.c.id == user.id)).first():
                raise AccountError(f"No user with id {user.id!r}.", status=404)
            conn.execute(
                api_tokens.insert().values(
                    id=token_id,
                    user_id=user.id,
                    name=name,
                    token_hash=hash_secret(secret),
                    purpose=purpose,
                    created_at=now,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
        info = TokenInfo(token_id, user.id, user.name, name, now, expires_at, None)
        return CreatedToken(info=info, token=secret)

    def list_tokens(self, user_id: str | None = None) -> list[TokenInfo]:
        """API tokens (of one user, or everyone's), newest first; login links are not listed."""
        query = (
            select(api_tokens, users.c.name.label("user_name"))
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.purpose == "api")
            .order_by(api_tokens.c.created_at.desc())
        )
        if user_id is not None:
            query = query.where(api_tokens.c.user_id == user_id)
        with self.engine.connect() as conn:
            return [_token_info(r) for r in conn.execute(query)]

    def get_token(self, token_id: str) -> TokenInfo | None:
        query = (
            select(api_tokens, users.c.name.label("user_name"))
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.id == token_id, api_tokens.c.purpose == "api")
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _token_info(row) if row else None

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token (from the next request on); False if there is no such token.
        Revoking twice is fine: the first revocation time stays."""
        with self.engine.begin() as conn:
            found = conn.execute(select(api_tokens.c.id).where(api_tokens.c.id == token_id))
            if found.first() is None:
                return False
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return True

    def _active(self, conn: Any, secret: str, purpose: Purpose) -> Any:
        params = {"hash": hash_secret(secret), "purpose": purpose, "now": time.time()}
        return conn.execute(_ACTIVE_TOKEN, params).first()

    def verify_token(self, token: str) -> User | None:
        """The user of an active API token; None for anything else (unknown, revoked,
        expired, a login-link token)."""
        if not looks_like_token(token):
            return None
        return self._lookup("t" + hash_secret(token), lambda conn: self._active(conn, token, "api"))

    def _lookup(self, key: str, query: Callable[[Connection], Any]) -> User | None:
        """Run a credential lookup; while SQL is away, answer from what it said recently."""
        try:
            with self.engine.connect() as conn:
                row = query(conn)
        except DBAPIError:
            user = self._recent.recall(key) if self._recent else None
            if user is None:
                raise
            return user
        if self._recent is not None:
            if row is None:
                self._recent.forget(key)
            else:
                self._recent.remember(key, _user(row), row.expires_at)
        return _user(row) if row else None

    # --- one-time login links and sessions -------------------------------------------------------
    def create_login_token(self, user: User, ttl_s: float) -> str:
        """A one-time token for a login link; earlier unused ones of the user stop working."""
        with self.engine.begin() as conn:
            conn.execute(
                update(api_tokens)
                .where(
                    api_tokens.c.user_id == user.id,
                    api_tokens.c.purpose == "login",
                    api_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=time.time())
            )
        return self.create_token(user, "login link", time.time() + ttl_s, purpose="login").token

    def start_session(self, credential: str, ttl_s: float) -> Session | None:
        """Sign in with an API token or a one-time login token (used up here)."""
        if not looks_like_token(credential):
            return None
        now = time.time()
        with self.engine.begin() as conn:
            row = self._active(conn, credential, "api")
            if row is None:
                row = self._active(conn, credential, "login")
                if row is None:
                    return None
                # Used once: the guarded UPDATE lets only one of two racing exchanges win.
                used = conn.execute(
                    update(api_tokens)
                    .where(api_tokens.c.id == row.token_id, api_tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                if used.rowcount != 1:
                    return None
            secret = new_secret()
            expires_at = now + ttl_s
            conn.execute(
                sessions.insert().values(
                    id=hash_secret(secret), user_id=row.id, created_at=now, expires_at=expires_at
                )
            )
            # Expired sessions go as new ones come, so the table does not grow forever.
            conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
        return Session(user=_user(row), secret=secret, expires_at=expires_at)

    def session_user(self, secret: str) -> User | None:
        if not looks_like_token(secret):
            return None
        digest = hash_secret(secret)
        params = {"hash": digest, "now": time.time()}
        return self._lookup("s" + digest, lambda conn: conn.execute(_SESSION_USER, params).first())

    def end_session(self, secret: str) -> None:
        if self._recent is not None:
            self._recent.forget("s" + hash_secret(secret))
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.id == hash_secret(secret)))
