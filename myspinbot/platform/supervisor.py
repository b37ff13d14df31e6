"""`myspinbot up`: the whole platform on one machine.

Starts what is not configured (Redis, S3, Triton), then every function at its
`minReplicas` and the gateway as child processes; restarts a child or an embedded
server that dies (as Nuclio or Kubernetes would restart a pod), a server on the same
port and data; stops everything on Ctrl-C or SIGTERM. What it started is written to
`<data dir>/run/platform.json`. One-off heavy work (the ONNX export, migrations) runs in
child processes (platform/prepare.py), so this long-lived process stays small.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from myspinbot import datadir, keys
from myspinbot.netutil import free_port
from myspinbot.platform.prepare import StepInterrupted, run_step
from myspinbot.platform.servers import STABLE_AFTER_S, SupervisedServer
from myspinbot.redisserver import EmbeddedRedis
from myspinbot.runtime.config import load_function_config
from myspinbot.serverproc import ServerProcess
from myspinbot.settings import Settings
from myspinbot.storage.embedded import EmbeddedS3
from myspinbot.triton.repository import default_repository
from myspinbot.triton.server import EmbeddedTriton

USES_ANNOTATION = "myspinbot.io/uses"

REPO_ROOT = Path(__file__).resolve().parents[2]
RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)
STOP_GRACE_S = 30.0


def up_argv(port: int, data_dir: Path, functions: list[Path] | None = None) -> list[str]:
    """The `myspinbot up` command line, for harnesses (tests, benchmarks) that start it."""
    argv = [
        sys.executable,
        "-m",
        "myspinbot",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    for f in functions or []:
        argv += ["--function", str(f)]
    return argv


def default_function_dirs() -> list[Path]:
    root = REPO_ROOT / "functions"
    return sorted(p for p in root.iterdir() if (p / "function.yaml").exists())


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    failures: int = 0  # deaths in a row without a stable run; picks the backoff
    next_start: float = 0.0
    started_at: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.started_at = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class StartInterrupted(Exception):
    """A stop was asked for (Ctrl-C, SIGTERM) before the platform was ready."""


class Platform:
    def __init__(
        self,
        settings: Settings,
        function_dirs: list[Path] | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.function_dirs = function_dirs or settings.function_dirs or default_function_dirs()
        self.say = say
        self.children: list[Child] = []
        self.servers: list[SupervisedServer] = []  # started in this order, stopped in reverse
        self._stopping = False
        self._stop_requested = False
        self.urls: dict[str, str] = {}
        self.login_token: str | None = None  # one-time, for the link `up` prints
        self._s3_keys: tuple[str, str] | None = None  # the embedded S3's, once started

    # --- signals ----------------------------------------------------------------------------
    def handle_signals(self) -> None:
        """Ctrl-C and SIGTERM ask for a stop, from now on: during start() too, where they end
        it at the next phase (StartInterrupted), so what it started can be stopped. (A
        KeyboardInterrupt could land anywhere, even in a finalizer that swallows it.)"""

        def request_stop(*_: Any) -> None:
            self._stop_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def _check_stop(self) -> None:
        if self._stop_requested:
            raise StartInterrupted

    # --- start ------------------------------------------------------------------------------
    def start(self) -> None:
        # People's photos, voices and LoRAs, the job history and the servers' secrets
        # live under it: no other account may enter it.
        datadir.private_dir(self.data_dir, self.say)
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "run").mkdir(parents=True, exist_ok=True)
        if self._speech_configured():
            # Before any server starts: a missing or broken voice file stops `up` at once.
            self._run_step(["speech"], dict(os.environ))
        redis_url = self.settings.redis_url or self._start_redis()
        self._check_stop()
        s3_endpoint = self.settings.s3_endpoint or self._start_s3()
        self._check_stop()
        env = self._child_env(redis_url, s3_endpoint)
        if self._uses_triton():
            env["MYSPINBOT_TRITON_URL"] = self.settings.triton_url or self._start_triton(env)
            self.urls["triton"] = env["MYSPINBOT_TRITON_URL"]
            self._check_stop()
        settings = Settings(
            **{**self.settings.model_dump(), "redis_url": redis_url, "s3_endpoint": s3_endpoint}
        )
        # The bucket and the schema exist before anyone writes (in a child: boto3 and
        # SQLAlchemy are not needed here afterwards).
        self._run_step(["storage"], env)
        self._check_stop()
        self._run_step(["accounts"], env)
        login_file = self.data_dir / datadir.SECRETS_DIR / datadir.LOGIN_TOKEN
        self.login_token = datadir.read_secret(login_file)
        login_file.unlink(missing_ok=True)  # it lives on only in the printed link
        redis.Redis.from_url(redis_url).delete(keys.FUNCTIONS)  # replicas re-register
        self.urls.update(
            {
                "redis": _hide_password(redis_url),
                "s3": s3_endpoint,
                "database": _hide_password(settings.sqlalchemy_url),
            }
        )
        self._plan_functions(env)
        self._plan_gateway(env)
        for child in self.children:
            child.start()
        self.write_state()
        self._wait_ready()

    def _run_step(self, args: list[str], env: dict[str, str]) -> None:
        try:
            run_step(args, env, self.say, lambda: self._stop_requested)
        except StepInterrupted:
            raise StartInterrupted from None

    def _supervise(self, name: str, server: ServerProcess, url: str) -> None:
        # The URL is said in log lines and written to the state file: never its password.
        self.servers.append(SupervisedServer(name, server, _hide_password(url), self.say))

    def _secret(self, name: str) -> str:
        return datadir.secret(self.data_dir, name, self.say)

    def _start_redis(self) -> str:
        server = EmbeddedRedis(
            self.data_dir / "redis",
            appendfsync=self.settings.redis_appendfsync,
            password=self._secret(datadir.REDIS_PASSWORD),
        )
        url = server.start()
        self._supervise("redis", server, url)
        self.say(
            f"  redis     {_hide_password(url)} (embedded, data in {self.data_dir / 'redis'}, "
            f"appendfsync {server.appendfsync}, password in {datadir.SECRETS_DIR}/)"
        )
        return url

    def _start_s3(self) -> str:
        # Its own random keys, never MYSPINBOT_S3_ACCESS_KEY/SECRET_KEY (meant for an S3
        # of your own) and so never their well-known defaults; the children get them.
        self._s3_keys = (
            self._secret(datadir.S3_ACCESS_KEY),
            self._secret(datadir.S3_SECRET_KEY),
        )
        server = EmbeddedS3(
            self.data_dir / "s3", access_key=self._s3_keys[0], secret_key=self._s3_keys[1]
        )
        endpoint = server.start()
        self._supervise("s3", server, endpoint)
        self.say(
            f"  s3        {endpoint} (embedded, files in {self.data_dir / 's3'}, "
            f"keys in {datadir.SECRETS_DIR}/)"
        )
        return endpoint

    def _speech_configured(self) -> bool:
        """A speech engine or voice chosen by the user, and a function that speaks."""
        chosen = self.settings.tts_engine.strip().lower() != "auto" or self.settings.tts_voice
        if not chosen:  # the built-in default: nothing to check, no config read early
            return False
        return any(load_function_config(d).name == "generate" for d in self.function_dirs)

    def _uses_triton(self) -> bool:
        """Only functions annotated `myspinbot.io/uses: triton` need it (generate)."""
        return any(
            "triton" in load_function_config(d).metadata.annotations.get(USES_ANNOTATION, "")
            for d in self.function_dirs
        )

    def _start_triton(self, env: dict[str, str]) -> str:
        repository = default_repository(self.settings)
        # torch is imported for the export (and for the check whether one is needed):
        # in a child that exits, not here.
        self._run_step(["export", str(repository)], env)
        self._check_stop()
        admin_key = self._secret(datadir.TRITON_ADMIN_KEY)
        env["MYSPINBOT_TRITON_ADMIN_KEY"] = admin_key
        server = EmbeddedTriton(
            repository,
            self.data_dir / "triton",
            # Loopback whatever --host says: only this machine's functions use Triton,
            # and its repository API (guarded by the admin key) runs the code it is sent.
            host="127.0.0.1",
            metrics_port=self.settings.triton_metrics_port or 0,
            admin_key=admin_key,
        )
        url = server.start()
        self._supervise("triton", server, url)
        self.urls["triton_metrics"] = server.metrics_url
        self.say(f"  triton    {url} (embedded, models in {repository})")
        return url

    def _child_env(self, redis_url: str, s3_endpoint: str) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env.update(
            {
                "MYSPINBOT_REDIS_URL": redis_url,
                "MYSPINBOT_S3_ENDPOINT": s3_endpoint,
                "MYSPINBOT_DATABASE_URL": self.settings.sqlalchemy_url,
                "MYSPINBOT_DATA_DIR": str(self.data_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self._platform_secrets())
        if self._s3_keys is not None:
            env["MYSPINBOT_S3_ACCESS_KEY"], env["MYSPINBOT_S3_SECRET_KEY"] = self._s3_keys
        return env

    def _platform_secrets(self) -> dict[str, str]:
        """The internal and metrics tokens: given ones, else generated once into the data
        directory (0600) and kept across restarts (Prometheus' copy stays valid)."""
        out = {}
        for var, given, name in (
            ("MYSPINBOT_INTERNAL_TOKEN", self.settings.internal_token, datadir.INTERNAL_TOKEN),
            ("MYSPINBOT_METRICS_TOKEN", self.settings.metrics_token, datadir.METRICS_TOKEN),
        ):
            out[var] = given.get_secret_value() if given else self._secret(name)
        return out

    def login_link(self) -> str | None:
        """`http://HOST:PORT/?token=...`: signs a browser in once (Jupyter-style)."""
        if not self.login_token:
            return None
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.settings.port}/?token={self.login_token}"

    def _plan_functions(self, env: dict[str, str]) -> None:
        for fdir in self.function_dirs:
            config = load_function_config(fdir)
            http_port = free_port() if config.triggers_of("http") else None
            if config.name == "status" and http_port:
                env["MYSPINBOT_STATUS_URL"] = f"http://{self.settings.host}:{http_port}"
                self.urls["status"] = env["MYSPINBOT_STATUS_URL"]
            for replica in range(max(config.spec.min_replicas, 1)):
                metrics_port = free_port()
                argv = [
                    sys.executable,
                    "-m",
                    "myspinbot",
                    "function",
                    "run",
                    str(Path(fdir).resolve()),
                    "--replica",
                    str(replica),
                ]
                if http_port:
                    argv += ["--http-port", str(http_port)]
                name = f"{config.name}-{replica}"
                self.children.append(
                    Child(
                        name=name,
                        argv=argv,
                        env={**env, "MYSPINBOT_METRICS_PORT": str(metrics_port)},
                        log_path=self.data_dir / "logs" / f"{name}.log",
                        info={
                            "function": config.name,
                            "replica": replica,
                            "metricsPort": metrics_port,
                            "httpPort": http_port,
                        },
                    )
                )

    def _plan_gateway(self, env: dict[str, str]) -> None:
        port = self.settings.port
        argv = [
            sys.executable,
            "-m",
            "myspinbot",
            "gateway",
            "--host",
            self.settings.host,
            "--port",
            str(port),
        ]
        # /health stays degraded until every function started here has registered, so
        # "ready" means all of them, not the ones that happened to be first.
        names = [load_function_config(d).name for d in self.function_dirs]
        gateway_env = {**env, "MYSPINBOT_EXPECTED_FUNCTIONS": json.dumps(names)}
        self.children.append(
            Child(
                name="gateway",
                argv=argv,
                env=gateway_env,
                log_path=self.data_dir / "logs" / "gateway.log",
                info={"port": port},
            )
        )
        self.urls["gateway"] = f"http://{self.settings.host}:{port}"

    def _wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = self.urls["gateway"] + "/health"
        last = "no answer"
        while time.monotonic() < deadline:
            self._check_stop()
            self.poll()
            try:
                resp = httpx.get(url, timeout=2)
                if resp.status_code == 200:
                    return
                last = json.dumps(resp.json().get("failing"))
            except (httpx.HTTPError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise RuntimeError(
            f"the platform did not become healthy in {timeout_s:.0f} s: {last}; "
            f"see the logs in {self.data_dir / 'logs'}"
        )

    # --- run ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Restart embedded servers and children that died (with backoff)."""
        if self._stopping or self._stop_requested:
            return
        now = time.monotonic()
        changed = False
        for server in self.servers:
            changed |= server.poll()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.next_start == 0.0:
                if now - child.started_at > STABLE_AFTER_S:
                    child.failures = 0
                delay = RESTART_BACKOFF_S[min(child.failures, len(RESTART_BACKOFF_S) - 1)]
                child.failures += 1
                child.next_start = now + delay
                self.say(
                    f"  {child.name} exited with {child.proc.returncode}; "
                    f"restarting in {delay:g} s (log: {child.log_path})"
                )
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                child.start()
                changed = True
        if changed:
            self.write_state()

    def write_state(self) -> None:
        state = {
            "urls": self.urls,
            "children": [
                {"name": c.name, "pid": c.pid, "restarts": c.restarts, **c.info}
                for c in self.children
            ],
            "servers": [
                {"name": s.name, "pid": s.pid, "restarts": s.restarts, "url": s.url}
                for s in self.servers
            ],
            "supervisorPid": os.getpid(),
        }
        path = self.data_dir / "run" / "platform.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def serve_forever(self) -> None:
        """Keep the children running until a stop is asked for (see handle_signals)."""
        while not self._stop_requested:
            self.poll()
            time.sleep(0.2)

    # --- stop -----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        running = [c for c in self.children if c.proc and c.proc.poll() is None]
        # Gateway first (no new work), then functions drain what they hold.
        for c in sorted(running, key=lambda c: c.name != "gateway"):
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for c in running:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.say(f"  {c.name} did not stop in {STOP_GRACE_S:g} s; killing it")
                c.proc.kill()
                c.proc.wait()
        for server in reversed(self.servers):
            server.stop()
        (self.data_dir / "run" / "platform.json").unlink(missing_ok=True)


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
