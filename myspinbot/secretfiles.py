"""Secrets kept in files of the data directory: created once, readable by the owner only.

(No SQL or web imports: the supervisor, the CLI and the gateway all use this.)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

INTERNAL_TOKEN = "internal.token"
METRICS_TOKEN = "metrics.token"
OWNER_TOKEN = "owner.token"
LOGIN_TOKEN = "login.token"


def secrets_dir(data_dir: Path) -> Path:
    path = data_dir / "secrets"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path` with mode 0600 from the first byte (never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    tmp.replace(path)


def read_secret(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return value or None


def ensure_secret(path: Path) -> str:
    """The secret in `path`, generated (256 random bits) on first use."""
    value = read_secret(path)
    if value is None:
        value = secrets.token_urlsafe(32)
        write_secret(path, value)
    return value
