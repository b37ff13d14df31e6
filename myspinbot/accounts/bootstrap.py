"""The owner account and its credentials, made by `myspinbot up` (a start-up step)."""

from __future__ import annotations

from dataclasses import dataclass

from myspinbot.accounts.models import User
from myspinbot.accounts.service import OWNER_NAME, Accounts
from myspinbot.datadir import LOGIN_TOKEN, OWNER_TOKEN, read_secret, secrets_dir, write_secret
from myspinbot.settings import Settings


@dataclass(frozen=True)
class Bootstrapped:
    owner: User
    created: bool  # the owner account was made just now (first start)
    new_cli_token: bool  # owner.token was (re)written


def bootstrap(settings: Settings) -> Bootstrapped:
    """Make sure an admin exists and the CLI has a working credential, and leave a fresh
    one-time login token in <secrets>/login.token for `up` to print as a link.

    On first start this creates the owner (admin) account and writes its API token to
    <secrets>/owner.token (0600). Later starts keep both, replacing owner.token only when
    it no longer works (deleted, revoked, or a new database)."""
    directory = secrets_dir(settings.data_dir)
    accounts = Accounts.open(settings.sqlalchemy_url)
    try:
        owner = accounts.owner()
        created = owner is None
        if owner is None:
            owner = accounts.add_user(OWNER_NAME, "admin")
        token_path = directory / OWNER_TOKEN
        current = read_secret(token_path)
        working = current is not None and accounts.verify_token(current) == owner
        if not working:
            write_secret(token_path, accounts.create_token(owner, "cli (myspinbot up)").token)
        login = accounts.create_login_token(owner, settings.login_link_ttl_s)
        write_secret(directory / LOGIN_TOKEN, login)
        return Bootstrapped(owner=owner, created=created, new_cli_token=not working)
    finally:
        accounts.close()
