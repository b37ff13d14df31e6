"""One replica of one function: `myspinbot function run DIR`.

It does what Nuclio's processor does for a Python function: read function.yaml,
set its env, import the handler, give every worker its own context (worker ids
are strings "0", "1", ..., as Nuclio's wrapper passes them) and call
`init_context` once per worker, then serve the triggers until SIGTERM.

The same `Replica` also runs inside a process Nuclio started (runtime/hosting.py):
there Nuclio serves the HTTP triggers and the replica only the stream triggers
and the registration with the platform.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nuclio_sdk
import redis
from prometheus_client import start_http_server

from myspinbot import keys
from myspinbot.runtime.config import FunctionConfig, load_function_config
from myspinbot.runtime.http_trigger import HttpTriggerApp, make_server, reuse_port_socket
from myspinbot.runtime.loader import handler_of, load_handler_module
from myspinbot.runtime.stream_trigger import StreamTrigger
from myspinbot.settings import Settings

REGISTRY_TTL_S = 10
SWITCH_INTERVAL_S = 0.0005


def make_logger(function: str, level: str) -> nuclio_sdk.Logger:
    logger = nuclio_sdk.Logger(getattr(logging, level.upper(), logging.INFO), f"fn.{function}")
    logger.set_handler("default", sys.stderr, nuclio_sdk.logger.HumanReadableFormatter())
    return logger


def apply_env(config: FunctionConfig) -> None:
    # Values the supervisor (or the user) already set win over function.yaml defaults.
    for var in config.spec.env:
        os.environ.setdefault(var.name, var.value)


def make_contexts(
    module: Any,
    trigger_name: str,
    kind: str,
    workers: int,
    logger: Any,
    first: Any | None = None,
    platform: Any | None = None,
) -> list[Any]:
    """One initialised context per worker. `first`, when given, is an already
    initialised context that becomes worker "0" (the one Nuclio made)."""
    platform = platform or nuclio_sdk.Platform("local")
    contexts = [] if first is None else [first]
    for worker_id in range(len(contexts), workers):
        ctx = nuclio_sdk.Context(
            logger=logger,
            platform=platform,
            worker_id=str(worker_id),  # a string, as Nuclio's wrapper passes it
            trigger=nuclio_sdk.TriggerInfo(kind, trigger_name),
        )
        init = getattr(module, "init_context", None)
        if init is not None:
            init(ctx)
        contexts.append(ctx)
    return contexts


class Replica:
    def __init__(
        self,
        function_dir: Path | None,
        replica: int | str,
        settings: Settings,
        http_port: int | None = None,
        *,
        config: FunctionConfig | None = None,
        logger: Any | None = None,
    ) -> None:
        self.dir = Path(function_dir) if function_dir is not None else None
        if config is None:
            if self.dir is None:
                raise ValueError("a Replica needs a function directory or a config")
            config = load_function_config(self.dir)
        self.config = config
        self.name = self.config.name
        self.replica = replica
        self.settings = settings
        self.http_port = http_port
        self.logger = logger or make_logger(self.name, settings.log_level)
        self.runner = "myspinbot"
        self._stop = threading.Event()
        self._streams: list[StreamTrigger] = []
        self._servers: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._redis: redis.Redis | None = None
        self._info: dict[str, Any] = {}
        self._user_data: list[Any] = []
        self._exit_code = 0

    @property
    def consumer(self) -> str:
        return f"{self.name}-{self.replica}"

    def run(self) -> int:
        # First thing: a SIGTERM that arrives while the handler loads or the triggers start
        # must still drain and hand work back, not kill the process mid-start.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        threading.excepthook = self._thread_died
        # Messages pass from the reader thread to worker threads; with CPython's default
        # 5 ms GIL switch interval each hand-off can stall that long behind a busy thread.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        apply_env(self.config)
        assert self.dir is not None
        module = load_handler_module(self.dir, self.config)
        self.start(module, handler_of(module, self.config))
        while not self._stop.wait(REGISTRY_TTL_S / 3):
            self._register()
        self.shutdown()
        return self._exit_code

    def start(
        self,
        module: Any,
        handler: Any,
        *,
        host_context: Any | None = None,
        foreign_triggers: dict[str, Any] | None = None,
    ) -> None:
        """Start this replica's triggers, its metrics endpoint, and register it.

        Under Nuclio (`host_context` given) Nuclio runs the http triggers, described
        by `foreign_triggers`; the replica runs the stream triggers, the first with
        Nuclio's context as its worker "0".
        """
        if self.settings.redis_url:
            self._redis = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        triggers: dict[str, Any] = dict(foreign_triggers or {})
        hosted = host_context is not None
        if host_context is not None:
            self._user_data.append(host_context.user_data)
        for tname, trig in self.config.triggers.items():
            if hosted and trig.kind != "redis-stream":
                continue  # Nuclio serves it
            contexts = make_contexts(
                module,
                tname,
                trig.kind,
                trig.workers,
                self.logger,
                first=host_context,
                platform=getattr(host_context, "platform", None),
            )
            host_context = None  # Nuclio's context serves one trigger
            self._user_data.append(contexts[0].user_data)
            if trig.kind == "redis-stream":
                triggers[tname] = self._start_stream(tname, trig, handler, contexts)
            else:
                triggers[tname] = self._start_http(tname, trig, handler, contexts)
        if self.settings.metrics_port:
            start_http_server(self.settings.metrics_port, addr=self.settings.host)
        self._info = {
            "function": self.name,
            "replica": self.replica,
            "runner": self.runner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "triggers": triggers,
            "metricsPort": self.settings.metrics_port,
            "description": self.config.spec.description,
            "startedAt": time.time(),
        }
        self._register()
        self.logger.info_with(
            "Function replica ready",
            function=self.name,
            replica=self.replica,
            runner=self.runner,
            triggers=list(triggers),
        )

    def keep_registered(self) -> threading.Thread:
        """Refresh the registration in a daemon thread until `shutdown` (under Nuclio,
        where the main thread belongs to Nuclio's wrapper)."""

        def loop() -> None:
            while not self._stop.wait(REGISTRY_TTL_S / 3):
                self._register()

        thread = threading.Thread(target=loop, name=f"{self.name}-registry", daemon=True)
        thread.start()
        return thread

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        """A trigger thread that died (e.g. on a Redis error its loop did not expect)
        leaves a replica that looks alive and registered but serves nothing. Crash-only:
        it stops and exits non-zero, so the supervisor starts it afresh (like a failed
        liveness probe); what it had not acknowledged is delivered again."""
        threading.__excepthook__(args)  # the traceback, into the replica's log
        thread = args.thread.name if args.thread is not None else "?"
        self.logger.error_with(
            "A thread died; the replica exits to be restarted",
            thread=thread,
            error=f"{args.exc_type.__name__}: {args.exc_value}",
        )
        self._exit_code = 70  # EX_SOFTWARE
        self._stop.set()

    def _start_stream(
        self, tname: str, trig: Any, handler: Any, contexts: list[Any]
    ) -> dict[str, Any]:
        if self._redis is None:
            raise RuntimeError(f"trigger {tname!r} needs Redis: set MYSPINBOT_REDIS_URL")
        st = StreamTrigger(
            function=self.name,
            name=tname,
            trigger=trig,
            handler=handler,
            contexts=contexts,
            client=self._redis,
            consumer=self.consumer,
            default_reclaim_idle_s=self.settings.reclaim_idle_s,
            logger=self.logger,
            # The handler's own failure hook (job functions: the job's retry/failed events).
            on_failure=getattr(handler, "on_failure", None),
        )
        st.start()
        self._streams.append(st)
        return {
            "kind": "redis-stream",
            "stream": st.stream,
            "group": st.group,
            "workers": trig.workers,
        }

    def _start_http(
        self, tname: str, trig: Any, handler: Any, contexts: list[Any]
    ) -> dict[str, Any]:
        port = self.http_port or trig.attributes.get("port") or 8080
        sock = reuse_port_socket(self.settings.host, int(port))
        server = make_server(
            HttpTriggerApp(function=self.name, name=tname, handler=handler, contexts=contexts)
        )
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"{tname}-http",
            daemon=True,
        )
        thread.start()
        self._servers.append(server)
        self._threads.append(thread)
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return {
            "kind": "http",
            "url": f"http://{self.settings.host}:{port}",
            "workers": trig.workers,
        }

    def capabilities(self) -> dict[str, Any]:
        """What the handler says it can do. Read at every registration: a handler may
        replace `user_data.capabilities` when that changes (an LLM server came up)."""
        merged: dict[str, Any] = {}
        for user_data in self._user_data:
            merged.update(getattr(user_data, "capabilities", None) or {})
        return merged

    def _register(self) -> None:
        if self._redis is None:
            return
        self._info["capabilities"] = self.capabilities()
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(keys.FUNCTIONS, self.consumer, json.dumps(self._info))
            pipe.set(keys.function_alive(self.name, str(self.replica)), "1", ex=REGISTRY_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            self.logger.warn_with("Could not refresh registration", error=str(exc))

    def shutdown(self, drain_timeout_s: float | None = None) -> None:
        self._stop.set()
        self.logger.info_with("Stopping: draining in-flight work", function=self.name)
        for st in self._streams:
            st.stop(drain_timeout_s)
        for server in self._servers:
            server.should_exit = True
        for t in self._threads:
            t.join(timeout=10)
        if self._redis is not None:
            try:
                self._redis.hdel(keys.FUNCTIONS, self.consumer)
                self._redis.delete(keys.function_alive(self.name, str(self.replica)))
            except redis.RedisError:
                pass
