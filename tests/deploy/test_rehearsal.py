"""The rendered-manifest rehearsal: the dev overlay's Deployments, started as local
processes with exactly their container command, arguments and environment, run a
train job and a generate job through the gateway.

Triton's pod is rehearsed too: its init container exports the model repository
(`myspinbot-entrypoint export`, the `tiny` preset on the CPU), then tritonserver
starts with the container's arguments.

Only what a cluster supplies is substituted: the image's paths become the checkout's
(its entrypoint is compose/entrypoint.sh, copied to /usr/local/bin/myspinbot-entrypoint;
/app/functions is functions/), volumes become directories, the Service addresses
become local servers (Redis, the S3 server, PostgreSQL, the rehearsed Triton, the
status function), container ports become free local ports, and the Secret
`myspinbot-connections` (created out of band on a cluster) holds the local servers'
URLs. Where the local tritonserver (the nvidia-pytriton wheel's, CPU-only) differs
from NVIDIA's image, flags say where its backends are. A manifest whose command,
arguments or environment the code does not understand fails here.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

import httpx
import pytest

from myspinbot.accounts import Accounts
from myspinbot.netutil import free_port
from myspinbot.redisserver import EmbeddedRedis
from myspinbot.storage import ArtifactStore, EmbeddedS3
from myspinbot.triton.server import backend_directory, pytriton_root, triton_env
from tests.conftest import _postgres_schema_url
from tests.deploy.support import ROOT, find, rendered
from tests.media_fixtures import face_photos, voice_clip
from tests.support import wait_for

ENTRYPOINT_IN_IMAGE = "myspinbot-entrypoint"
ENTRYPOINT = ROOT / "compose" / "entrypoint.sh"
DEPLOYMENTS = ("ws-relay", "train", "generate", "gateway")
AUTH: dict[str, str] = {}  # the rehearsal owner's credential, set by the `cluster` fixture


def test_the_image_installs_the_entrypoint_the_manifests_call() -> None:
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    assert f"compose/entrypoint.sh /usr/local/bin/{ENTRYPOINT_IN_IMAGE}" in dockerfile
    assert "COPY functions/ functions/" in dockerfile and "WORKDIR /app" in dockerfile


@dataclass
class Cluster:
    """What the cluster would provide: Secrets, Service addresses, volumes."""

    secrets: dict[str, dict[str, str]]
    services: dict[str, str]  # in-cluster address -> local address
    volumes: dict[str, Path]  # mount path in the image -> local directory
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env_of(self, container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
            else:
                env.update(self.secrets[source["secretRef"]["name"]])
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.secrets[ref["name"]][ref["key"]]
        return {k: self.local(v) for k, v in env.items()}

    def local(self, value: str) -> str:
        for remote, here in self.services.items():
            value = value.replace(remote, here)
        for mount, path in self.volumes.items():
            if value == mount or value.startswith(mount + "/"):
                value = str(path) + value[len(mount) :]
        return value

    def environ(self, env: dict[str, str], base: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **(base or os.environ),
            **env,
            # The image's Python; the checkout instead of /app.
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "MYSPINBOT_FUNCTIONS_ROOT": str(ROOT / "functions"),
            # Local stand-ins only: speed (a smaller video) and the tiny export's base model.
            "MYSPINBOT_VIDEO_SIZE": "256",
            "MYSPINBOT_TRITON_RETRY_S": "3",
        }

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs.append(
            subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_triton(c: Cluster, docs: list[dict[str, Any]]) -> str:
    """Triton's pod: the export init container to completion, then tritonserver."""
    pod = find(docs, "Deployment", "triton")["spec"]["template"]["spec"]
    (export,) = pod["initContainers"]
    env = c.environ(c.env_of(export, docs))
    done = subprocess.run(
        deployment_argv(export),
        env=env,
        stdout=open(c.logs / "triton-export.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, logs(c)
    (container,) = pod["containers"]
    root, repository = pytriton_root(), c.volumes["/models"]
    ports = {name: free_port() for name in ("http", "grpc", "metrics")}
    argv = [str(root / "bin" / "tritonserver")]
    for arg in container["command"][1:] + container.get("args", []):
        flag, _, value = arg.partition("=")
        if flag.endswith("-port"):
            value = str(ports[flag.removeprefix("--").removesuffix("-port")])
        argv.append(f"{flag}={c.local(value)}" if value else flag)
    argv += [  # the wheel's CPU build: where its backends are, no pinned GPU memory
        f"--backend-directory={backend_directory(root, c.logs.parent / 'backends')}",
        f"--cache-directory={root / 'caches'}",
        "--http-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--pinned-memory-pool-byte-size=0",
    ]
    base = triton_env(root, repository)
    c.start(
        "triton", argv, {**base, **{k: c.local(v) for k, v in c.env_of(container, docs).items()}}
    )
    url = f"http://127.0.0.1:{ports['http']}"

    def ready() -> bool:
        assert c.procs[-1].poll() is None, logs(c)
        try:
            return httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=300, what="the rehearsed tritonserver", interval=0.5)
    return f"127.0.0.1:{ports['http']}"


def deployment_argv(container: dict[str, Any]) -> list[str]:
    argv = list(container["command"]) + list(container.get("args", []))
    assert argv[0] == ENTRYPOINT_IN_IMAGE, argv
    return ["sh", str(ENTRYPOINT), *argv[1:]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("rehearsal")
    redis = EmbeddedRedis(tmp / "redis", appendonly=True)
    redis_url = redis.start()
    postgres = _postgres_schema_url()
    database_url = next(postgres)
    with EmbeddedS3(tmp / "s3", access_key="rehearsal", secret_key=token_urlsafe(24)) as s3:
        # The bucket exists before the platform starts (the operator's step on a cluster).
        ArtifactStore(s3.endpoint, "myspinbot", s3.access_key, s3.secret_key).ensure_bucket()
        status_port, gateway_port = free_port(), free_port()
        (tmp / "logs").mkdir()
        c = Cluster(
            secrets={
                "myspinbot-connections": {
                    "MYSPINBOT_REDIS_URL": redis_url,
                    "MYSPINBOT_DATABASE_URL": database_url,
                    "MYSPINBOT_S3_ENDPOINT": s3.endpoint,
                    "MYSPINBOT_S3_ACCESS_KEY": s3.access_key,
                    "MYSPINBOT_S3_SECRET_KEY": s3.secret_key,
                    "MYSPINBOT_INTERNAL_TOKEN": secrets.token_urlsafe(32),
                    "MYSPINBOT_METRICS_TOKEN": secrets.token_urlsafe(32),
                }
            },
            services={"http://nuclio-status:8080": f"http://127.0.0.1:{status_port}"},
            volumes={"/var/lib/myspinbot": tmp / "data", "/models": tmp / "triton-repository"},
            logs=tmp / "logs",
        )
        docs = rendered("dev")
        try:
            c.services["triton:8000"] = start_triton(c, docs)
            for name in DEPLOYMENTS:
                pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
                (container,) = pod["containers"]
                env = c.env_of(container, docs)
                # Container ports become free local ports.
                if "MYSPINBOT_METRICS_PORT" in env:
                    env["MYSPINBOT_METRICS_PORT"] = str(free_port())
                if "GATEWAY_PORT" in env:
                    env["GATEWAY_PORT"] = str(gateway_port)
                c.start(name, deployment_argv(container), c.environ(env))
            # status is a NuclioFunction: its spec's environment, run as the image runs a
            # function outside Nuclio (compose's `status` service).
            status = find(docs, "NuclioFunction", "status")["spec"]
            env = c.env_of(status, docs)
            env.update(MYSPINBOT_METRICS_PORT=str(free_port()), FUNCTION_HTTP_PORT=str(status_port))
            c.start("status", ["sh", str(ENTRYPOINT), "function", "status"], c.environ(env))
            url = f"http://127.0.0.1:{gateway_port}"
            # The operator's step on a cluster (docs/deploy.md): the first admin and a token.
            accounts = Accounts.open(database_url)
            owner = accounts.add_user("owner", "admin")
            AUTH["Authorization"] = f"Bearer {accounts.create_token(owner, 'rehearsal').token}"
            accounts.close()

            def healthy() -> bool:
                for p in c.procs:
                    assert p.poll() is None, logs(c)
                try:
                    if httpx.get(url + "/health", timeout=5).status_code != 200:
                        return False
                    # Ready once every rendered function has registered (each replica
                    # registers when its triggers run, possibly after the gateway is up).
                    caps = httpx.get(url + "/api/capabilities", headers=AUTH, timeout=5).json()
                    caps = caps["functions"]
                    return {"train", "generate", "status", "ws-relay"} <= set(caps)
                except httpx.HTTPError:
                    return False

            wait_for(healthy, timeout=180, what="the rehearsed platform", interval=0.5)
            yield url
        finally:
            c.stop()
            redis.stop()
            next(postgres, None)


def logs(c: Cluster) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in c.logs.glob("*.log"))


def wait_job(url: str, job_id: str, timeout: float = 600) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def done() -> bool:
        nonlocal last
        last = httpx.get(f"{url}/api/status/{job_id}", headers=AUTH, timeout=30).json()
        return last.get("state") in {"completed", "failed", "cancelled"}

    wait_for(done, timeout=timeout, what=f"job {job_id}", interval=0.5)
    return last


def test_rendered_manifests_run_a_train_and_a_generate_job(cluster: str) -> None:
    url = cluster
    caps = httpx.get(url + "/api/capabilities", headers=AUTH, timeout=30).json()["functions"]
    assert {"train", "generate", "status", "ws-relay"} <= set(caps)
    files: list[Any] = [("images", (n, d)) for n, d in face_photos(6)]
    files.append(("voice", ("voice.wav", voice_clip(120.0), "audio/wav")))
    options = '{"steps": 10, "rank": 4, "seed": 3, "learningRate": 0.01}'
    resp = httpx.post(
        url + "/api/train",
        files=files,
        data={"name": "Rehearsal", "voice_text": "Hello from the cluster", "options": options},
        headers=AUTH,
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    trained = wait_job(url, resp.json()["jobId"])
    assert trained["state"] == "completed", trained
    profile_id = trained["result"]["profileId"]
    resp = httpx.post(
        url + "/api/generate",
        json={"profileId": profile_id, "mode": "direct", "narration": "Hello from the cluster."},
        headers=AUTH,
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    made = wait_job(url, resp.json()["jobId"])
    assert made["state"] == "completed", made
    assert any(a["name"].endswith(".mp4") for a in made["result"]["artifacts"]), made["result"]
