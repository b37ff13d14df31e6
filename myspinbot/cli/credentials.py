"""The CLI's own credential: MYSPINBOT_TOKEN, else the owner token `myspinbot up` wrote."""

from __future__ import annotations

from myspinbot.datadir import OWNER_TOKEN, read_secret
from myspinbot.settings import Settings


def cli_token() -> str | None:
    settings = Settings()
    if settings.token is not None:
        return settings.token.get_secret_value()
    # <data dir>/secrets/owner.token (0600): only the account that ran `up` can read it.
    return read_secret(settings.secrets_dir / OWNER_TOKEN)


def auth_headers() -> dict[str, str]:
    token = cli_token()
    return {"Authorization": f"Bearer {token}"} if token else {}
