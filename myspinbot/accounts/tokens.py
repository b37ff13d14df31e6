"""Random credentials and how they are stored (a SHA-256 hash, never the value)."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "msb_"  # recognisable in a leaked log or a secret scanner
SECRET_BYTES = 32  # 43 url-safe characters


def new_secret() -> str:
    """`msb_` + 43 url-safe characters (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """What SQL stores. The secret has 256 random bits, so a plain (unsalted, fast) hash
    cannot be searched backwards, and lookups by hash stay a single index probe."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 200
