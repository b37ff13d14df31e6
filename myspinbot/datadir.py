"""The data directory and the secrets `myspinbot up` keeps in it, private to their owner.

The data directory holds people's photos, voices and LoRA files (the embedded S3), the
job history (SQLite) and the Redis AOF, so it is 0700: another account on the same
machine may not even list it. The secrets the embedded servers are started with (the
Redis password, the S3 keys, Triton's admin key, the platform's tokens) live in
`<data_dir>/secrets/`, one file each, 0600, generated on first start and reused after,
so a restart keeps every URL and key the processes already hold.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SECRETS_DIR = "secrets"

# Names of the files in <data_dir>/secrets/ (docs/security.md lists them all).
REDIS_PASSWORD = "redis.password"
S3_ACCESS_KEY = "s3-access.key"
S3_SECRET_KEY = "s3-secret.key"
TRITON_ADMIN_KEY = "triton-admin.key"
INTERNAL_TOKEN = "internal.token"  # the gateway -> function HTTP triggers credential
METRICS_TOKEN = "metrics.token"  # Prometheus -> /metrics
OWNER_TOKEN = "owner.token"  # the owner's API token, for the CLI
LOGIN_TOKEN = "login.token"  # the one-time sign-in link's token, printed by `up`

# Generated secrets are URL-safe base64: they go into a redis:// URL, rclone's
# "ACCESS,SECRET" pair and tritonserver's `<apis>:<header>=<value>` flag unescaped, so a
# hand-written one must keep to the same characters.
_SECRET_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_MIN_SECRET_LEN = 16


def _quiet(_: str) -> None:
    pass


def private_dir(path: Path, say: Callable[[str], None] = _quiet) -> Path:
    """`path` as a directory only its owner may enter: created 0700, or an existing one
    that group or others could read or enter tightened to 0700 (and said so)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)  # mkdir's mode passes the umask
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != DIR_MODE:
        os.chmod(path, DIR_MODE)
        if mode & 0o077:
            say(f"  tightened {path} from {mode:04o} to {DIR_MODE:04o} (only you may read it)")
    return path


def secrets_dir(data_dir: Path, say: Callable[[str], None] = _quiet) -> Path:
    return private_dir(Path(data_dir) / SECRETS_DIR, say)


def secret(data_dir: Path, name: str, say: Callable[[str], None] = _quiet) -> str:
    """The secret in `<data_dir>/secrets/<name>`: generated (32 random bytes) and written
    0600 when the file does not exist yet, read back on every later start."""
    folder = secrets_dir(data_dir, say)
    path = folder / name
    if not path.exists():
        _create(path, secrets.token_urlsafe(32))
        say(f"  generated {path}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, FILE_MODE)
        say(f"  tightened {path} from {mode:04o} to {FILE_MODE:04o}")
    value = path.read_text().strip()
    if len(value) < _MIN_SECRET_LEN or not _SECRET_CHARS.fullmatch(value):
        raise RuntimeError(
            f"{path} does not hold a usable secret (at least {_MIN_SECRET_LEN} of the "
            "characters A-Z a-z 0-9 _ -); delete the file and a new one is generated"
        )
    return value


def _create(path: Path, value: str) -> None:
    """Write `value` to `path` as a whole or not at all, never over an existing file: two
    `up`s starting on one data directory agree on the first one's secret."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        # os.link fails if another process created it meanwhile: that one is kept.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_secret(path: Path, value: str) -> None:
    """Replace `path` with `value`, mode 0600 from the first byte (never world-readable);
    for values made elsewhere (an API token), where `secret` generates its own."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    tmp.replace(path)


def read_secret(path: Path) -> str | None:
    """The value in `path`, or None where there is no such file (or it is not ours)."""
    try:
        value = path.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return value or None
