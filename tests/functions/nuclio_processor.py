"""Test harness, not product code: the processor's side of tests/functions/nuclio_shim.py.

`NuclioWorker` starts a function directory the way Nuclio runs it after
`nuctl deploy`: the handler file alone on PYTHONPATH (Nuclio copies the function
directory to /opt/nuclio), the deployed config written where the processor
reads it (with the default HTTP trigger Nuclio adds), NUCLIO_* in the
environment, and one wrapper process per worker of that trigger. Events go over
a Unix socket as the processor encodes them (rpc/encoder: msgpack, Unix-second
timestamp, empty url for HTTP, the body as bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import yaml

from tests.support import ROOT

SHIM = Path(__file__).with_name("nuclio_shim.py")


def processor_config(function_dir: Path) -> dict[str, Any]:
    """function.yaml as Nuclio's platform enriches it before writing processor.yaml."""
    raw = yaml.safe_load((function_dir / "function.yaml").read_text())
    spec = dict(raw["spec"])
    triggers = dict(spec.get("triggers") or {})
    if not triggers and not spec.get("disableDefaultHTTPTrigger"):
        triggers["default-http"] = {
            "class": "",
            "kind": "http",
            "name": "default-http",
            "numWorkers": 1,
            "workerTerminationTimeout": "10s",
        }
    spec["triggers"] = triggers
    spec.setdefault("image", f"nuclio/processor-{raw['metadata']['name']}:latest")
    return {"metadata": {**raw["metadata"], "namespace": "myspinbot"}, "spec": spec}


class NuclioWorker:
    def __init__(self, function_dir: Path, work: Path, env: dict[str, str], pod: str) -> None:
        self.config = processor_config(function_dir)
        self.name = self.config["metadata"]["name"]
        opt = work / "opt-nuclio"  # what the image holds at /opt/nuclio: the function's files
        shutil.copytree(function_dir, opt)
        conf = work / "processor.yaml"
        conf.write_text(yaml.safe_dump(self.config))
        self.socket_path = str(work / "event.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.socket_path)
        self.server.listen(1)
        trigger_name, trigger = next(iter(self.config["spec"]["triggers"].items()))
        self.env = {
            **env,
            "PYTHONPATH": os.pathsep.join([str(opt), str(ROOT)]),
            "NUCLIO_FUNCTION_NAME": self.name,
            "NUCLIO_FUNCTION_HANDLER": self.config["spec"]["handler"],
            "NUCLIO_FUNCTION_INSTANCE": pod,
            "MYSPINBOT_NUCLIO_PROCESSOR_CONFIG": str(conf),
        }
        self.argv = [
            sys.executable,
            "-u",
            str(SHIM),
            "--handler",
            self.config["spec"]["handler"],
            "--event-socket-path",
            self.socket_path,
            "--platform-kind",
            "kube",
            "--namespace",
            "myspinbot",
            "--worker-id",
            "0",
            "--trigger-kind",
            trigger["kind"],
            "--trigger-name",
            trigger_name,
        ]
        self.cwd = work
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: socket.socket | None = None
        self._rfile: Any = None

    def start(self, timeout: float = 60) -> NuclioWorker:
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd)
        self.server.settimeout(timeout)
        self.conn, _ = self.server.accept()
        self._rfile = self.conn.makefile("rb")
        assert self._rfile.readline() == b"s\n", "the worker did not report ready"
        return self

    def call(
        self,
        body: bytes,
        content_type: str,
        path: str = "/",
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        assert self.conn is not None
        event = {
            "content_type": content_type,
            "content-type": content_type,
            "trigger": {"kind": "http", "name": "default-http"},
            "fields": {},
            "headers": {"Content-Type": content_type, **(headers or {})},
            "id": "e3b0c442-98fc-1c14-9afb-f4c8996fb924",
            "method": method,
            "path": path,
            "size": len(body),
            "timestamp": int(time.time()),
            "url": "",
            "shard_id": 0,
            "num_shards": 0,
            "type": "",
            "type_version": "",
            "version": "",
            "offset": 0,
            "topic": "",
            "body": body,
        }
        frame = msgpack.packb(event, use_bin_type=True)
        self.conn.sendall(struct.pack(">i", len(frame)) + frame)
        line = self._rfile.readline()
        assert line[:1] == b"r", line
        return dict(json.loads(line[1:]))

    def terminate(self, timeout: float = 60) -> int:
        """SIGUSR1, the processor's termination signal to its workers."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for s in (self.conn, self.server):
            if s is not None:
                s.close()
