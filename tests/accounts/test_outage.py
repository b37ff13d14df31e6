"""While PostgreSQL is away, credentials SQL accepted just before keep working (jobs go
on through an outage); nothing SQL had not accepted is let in."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy.exc import DBAPIError

from myspinbot.accounts import Accounts
from myspinbot.db.history import create_db_engine
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_schema_url()


def test_recently_verified_credentials_survive_an_sql_outage(pg_url: str) -> None:
    Accounts.open(pg_url).close()  # migrated
    host_port = urlsplit(POSTGRES_URL).netloc.split("@")[-1]
    host, _, port = host_port.partition(":")
    proxy = TcpProxy(host, int(port or 5432)).start()
    proxied = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    accounts = Accounts(create_db_engine(proxied), outage_grace_s=600)
    strict = Accounts(create_db_engine(proxied))  # no grace
    try:
        ada = accounts.add_user("ada")
        token = accounts.create_token(ada).token
        revoked = accounts.create_token(ada, "old")
        session = accounts.start_session(token, ttl_s=600)
        assert session is not None
        assert accounts.verify_token(token) == ada
        assert accounts.session_user(session.secret) == ada
        accounts.revoke_token(revoked.info.id)
        assert accounts.verify_token(revoked.token) is None
        unseen = accounts.create_token(ada, "never used").token

        proxy.stop()  # PostgreSQL is gone
        assert accounts.verify_token(token) == ada
        assert accounts.session_user(session.secret) == ada
        for refused in (revoked.token, unseen):  # SQL never vouched for it: no answer
            with pytest.raises(DBAPIError):
                accounts.verify_token(refused)
        with pytest.raises(DBAPIError):
            strict.verify_token(token)

        proxy.start()
        accounts.engine.dispose()  # connections cut by the outage
        assert accounts.verify_token(unseen) == ada
    finally:
        proxy.stop()
        accounts.close()
        strict.close()
