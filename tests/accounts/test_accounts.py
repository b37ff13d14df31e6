"""The accounts service against SQLite and PostgreSQL: users, token lifecycle, sessions."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from myspinbot.accounts import AccountError, Accounts, hash_secret
from myspinbot.db.schema import api_tokens, sessions


@pytest.fixture
def accounts(db_url: str) -> Iterator[Accounts]:
    a = Accounts.open(db_url)
    yield a
    a.close()


def all_text(accounts: Accounts) -> str:
    """Every value of every row of every table, as one string."""
    out = []
    with accounts.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                out.append(" ".join(str(v) for v in row))
    return "\n".join(out)


def test_users_are_added_listed_and_removed(accounts: Accounts) -> None:
    owner = accounts.add_user("owner", "admin")
    ada = accounts.add_user("ada")
    assert ada.role == "member" and owner.is_admin
    assert [u.name for u in accounts.list_users()] == ["owner", "ada"]
    assert accounts.owner() == owner
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_user("ada")
    with pytest.raises(AccountError, match="not allowed"):
        accounts.add_user("a b")
    with pytest.raises(AccountError, match="last admin"):
        accounts.remove_user(owner.id)
    token = accounts.create_token(ada, "laptop").token
    assert accounts.remove_user(ada.id)
    assert not accounts.remove_user(ada.id)
    assert accounts.verify_token(token) is None  # a removed user's tokens die with them
    assert [u.name for u in accounts.list_users()] == ["owner"]


def test_a_token_is_shown_once_stored_hashed_and_revocable(accounts: Accounts) -> None:
    ada = accounts.add_user("ada")
    created = accounts.create_token(ada, "laptop")
    assert created.token.startswith("msb_") and len(created.token) == 4 + 43
    assert accounts.verify_token(created.token) == ada
    # SQL holds the hash, never the token.
    stored = all_text(accounts)
    assert created.token not in stored and created.token[4:] not in stored
    assert hash_secret(created.token) in stored
    listed = accounts.list_tokens(ada.id)
    assert [(t.name, t.user_name, t.active(time.time())) for t in listed] == [
        ("laptop", "ada", True)
    ]
    assert accounts.revoke_token(created.info.id)
    assert accounts.verify_token(created.token) is None
    assert not accounts.list_tokens(ada.id)[0].active(time.time())
    assert accounts.revoke_token(created.info.id)  # twice is fine
    assert not accounts.revoke_token("nope")
    assert accounts.verify_token("msb_" + "x" * 43) is None
    assert accounts.verify_token("") is None


def test_an_expired_token_is_refused(accounts: Accounts) -> None:
    ada = accounts.add_user("ada")
    created = accounts.create_token(ada, "short", expires_at=time.time() + 3600)
    assert accounts.verify_token(created.token) == ada
    with accounts.engine.begin() as conn:  # an hour later, as far as the row is concerned
        conn.execute(
            sa.update(api_tokens)
            .where(api_tokens.c.id == created.info.id)
            .values(expires_at=time.time() - 1)
        )
    assert accounts.verify_token(created.token) is None
    with pytest.raises(AccountError, match="future"):
        accounts.create_token(ada, "past", expires_at=time.time() - 1)


def test_a_login_token_opens_one_session_and_is_no_bearer_token(accounts: Accounts) -> None:
    owner = accounts.add_user("owner", "admin")
    login = accounts.create_login_token(owner, ttl_s=600)
    assert accounts.verify_token(login) is None  # not an API token
    assert accounts.list_tokens() == []  # and not listed as one
    session = accounts.start_session(login, ttl_s=600)
    assert session is not None and session.user == owner
    assert accounts.start_session(login, ttl_s=600) is None  # used up
    assert accounts.session_user(session.secret) == owner
    assert session.secret not in all_text(accounts)
    accounts.end_session(session.secret)
    assert accounts.session_user(session.secret) is None
    # A newer link replaces an unused older one.
    first = accounts.create_login_token(owner, ttl_s=600)
    second = accounts.create_login_token(owner, ttl_s=600)
    assert accounts.start_session(first, ttl_s=600) is None
    assert accounts.start_session(second, ttl_s=600) is not None


def test_an_api_token_opens_sessions_and_an_expired_session_ends(accounts: Accounts) -> None:
    ada = accounts.add_user("ada")
    token = accounts.create_token(ada).token
    one = accounts.start_session(token, ttl_s=600)
    two = accounts.start_session(token, ttl_s=600)
    assert one and two and one.secret != two.secret
    assert accounts.verify_token(token) == ada  # an API token is not used up
    with accounts.engine.begin() as conn:
        conn.execute(sa.update(sessions).values(expires_at=time.time() - 1))
    assert accounts.session_user(one.secret) is None
