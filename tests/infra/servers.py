"""The real servers the live test runs next to the platform: Prometheus and the
Redis exporter from Debian, and Triton from the nvidia-pytriton wheel."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from myspinbot.netutil import free_port
from tests.infra.support import Process, tool, wait_for


# --- Prometheus ----------------------------------------------------------------------------
class Prometheus:
    def __init__(self, workdir: Path, config: dict[str, Any], port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.url = f"http://127.0.0.1:{port}"
        self.process = Process(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        )

    def start(self) -> Prometheus:
        self.process.wait_http(self.url + "/-/ready", timeout=60)
        return self

    def stop(self) -> None:
        self.process.stop()

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; a PromQL error comes back as an AssertionError."""
        resp = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))


# --- Redis exporter -----------------------------------------------------------------------
def start_redis_exporter(workdir: Path, redis_url: str) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        "prometheus-redis-exporter",
        [
            tool("prometheus-redis-exporter"),
            f"-redis.addr={redis_url}",
            f"-web.listen-address=127.0.0.1:{port}",
        ],
        workdir / "redis-exporter.log",
    )
    target = f"127.0.0.1:{port}"
    proc.wait_http(f"http://{target}/health", timeout=30)
    return proc, target


# --- Triton ---------------------------------------------------------------------------------
IDENTITY_CONFIG = """\
name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""

IDENTITY_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", data)]))
        return responses
"""


class Triton:
    """tritonserver from the nvidia-pytriton wheel, on CPU, with one Python-backend
    model (identity) in a temporary repository: per-model `nv_inference_*`
    families only exist once a model is loaded."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        root = _pytriton_server_dir()
        self.http = f"http://127.0.0.1:{free_port()}"
        metrics_port = free_port()
        self.metrics_target = f"127.0.0.1:{metrics_port}"
        models = workdir / "models"
        (models / "identity" / "1").mkdir(parents=True)
        (models / "identity" / "config.pbtxt").write_text(IDENTITY_CONFIG)
        (models / "identity" / "1" / "model.py").write_text(textwrap.dedent(IDENTITY_MODEL))
        self.process = Process(
            "tritonserver",
            [
                str(root / "bin" / "tritonserver"),
                f"--model-repository={models}",
                "--model-control-mode=explicit",
                f"--backend-directory={_python_backend(root, workdir)}",
                f"--cache-directory={root / 'caches'}",
                f"--http-port={self.http.rsplit(':', 1)[1]}",
                "--allow-grpc=false",
                f"--metrics-port={metrics_port}",
                "--pinned-memory-pool-byte-size=0",
                "--exit-timeout-secs=5",
            ],
            workdir / "triton.log",
            env=_triton_env(root),
        )

    def wait_ready(self) -> None:
        self.process.wait_http(self.http + "/v2/health/ready", timeout=120)

    def load_and_infer(self) -> None:
        load = httpx.post(self.http + "/v2/repository/models/identity/load", timeout=180)
        assert load.status_code == 200, f"loading the identity model failed: {load.text}\n" + (
            self.process.log_tail()
        )
        body = {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}
        resp = httpx.post(self.http + "/v2/models/identity/infer", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0]

    def stop(self) -> None:
        self.process.stop()


def _pytriton_server_dir() -> Path:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the nvidia-pytriton wheel ships tritonserver for linux x86_64 only")
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("tritonserver is not installed: it comes from the pip package nvidia-pytriton")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    assert (root / "bin" / "tritonserver").exists(), f"no tritonserver under {root}"
    return root


def _python_backend(root: Path, workdir: Path) -> Path:
    """A backend directory with the Python backend and the stub for this Python:
    the wheel ships one stub per Python version beside the backend (pytriton
    assembles the same layout at run time)."""
    backends = workdir / "backends"
    shutil.copytree(root / "backends" / "python", backends / "python")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        pytest.fail(f"nvidia-pytriton has no Python backend stub for Python {version}")
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def _triton_env(root: Path) -> dict[str, str]:
    site = Path(sysconfig.get_paths()["purelib"])
    env = dict(os.environ)
    # The server and the stub link the wheel's bundled libraries and this
    # Python's libpython (the stub embeds the interpreter).
    libs = [str(site / "nvidia_pytriton.libs"), str(sysconfig.get_config_var("LIBDIR"))]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    # The embedded interpreter does not know about the venv: give it numpy & co.
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(":")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env


def scrape(target: str, path: str = "/metrics", headers: dict[str, str] | None = None) -> str:
    text = wait_for(
        lambda: httpx.get(f"http://{target}{path}", headers=headers, timeout=10).text,
        30,
        f"{target}{path}",
    )
    return str(text)
