"""The typed values the accounts service hands out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "member"]
ROLES: tuple[Role, ...] = ("admin", "member")
Purpose = Literal["api", "login"]


class AccountError(Exception):
    """A request the accounts service refuses; the message says why, for a person.

    `status` is the HTTP status a web layer should answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself (only its hash is stored)."""

    id: str
    user_id: str
    user_name: str
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class CreatedToken:
    """A freshly created token: `token` is the only time the plain value exists."""

    info: TokenInfo
    token: str


@dataclass(frozen=True)
class Session:
    """A signed-in browser: `secret` goes into the cookie; SQL holds only its hash."""

    user: User
    secret: str
    expires_at: float
