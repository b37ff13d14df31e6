"""Who may use the platform: users, API tokens, one-time login tokens and sessions.

Plain SQL through SQLAlchemy Core (no web framework here): the gateway, the CLI's
start-up step and the tests all use the same `Accounts` service.
"""

from myspinbot.accounts.models import (
    AccountError,
    CreatedToken,
    Role,
    Session,
    TokenInfo,
    User,
)
from myspinbot.accounts.service import Accounts
from myspinbot.accounts.tokens import TOKEN_PREFIX, hash_secret, new_secret

__all__ = [
    "TOKEN_PREFIX",
    "AccountError",
    "Accounts",
    "CreatedToken",
    "Role",
    "Session",
    "TokenInfo",
    "User",
    "hash_secret",
    "new_secret",
]
