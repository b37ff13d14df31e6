"""The embedded tritonserver: the real Triton binary from the `nvidia-pytriton` wheel.

That build has the python backend only and runs on a CPU, which is all this repository
needs (its models run ONNX Runtime from Python). Two things must line up for the
backend's stub, which embeds an interpreter: it links this Python's `libpython3.X.so`
(found through LD_LIBRARY_PATH at the interpreter's LIBDIR: a pyenv build keeps it
elsewhere than Debian's), and it must import the venv's numpy and onnxruntime (the venv's
site-packages on PYTHONPATH, its bin first on PATH).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import secrets
import shutil
import sys
import sysconfig
from pathlib import Path

import httpx

from myspinbot.netutil import free_port
from myspinbot.serverproc import ServerProcess
from myspinbot.triton.repository import ADMIN_KEY_HEADER, REPOSITORY_ENV

_START_TIMEOUT_S = 300.0  # loading every model; a big UNet on a slow disk takes a while

# The APIs that need the admin key. `model-repository` above all: a load with override
# files runs the `model.py` it is sent. The others the platform never uses: shared-memory
# regions, statistics (they name every profile's model), trace and log settings. Health,
# metadata, model config and inference stay open to whoever reaches the port.
RESTRICTED_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")


def restricted_api_flag(admin_key: str) -> str:
    """tritonserver's `--http-restricted-api=<api>,<api>:<header>=<value>` (the same
    syntax serves `--grpc-restricted-protocol`)."""
    if not admin_key or any(c in admin_key for c in ",:= \t\n"):
        raise ValueError("the Triton admin key must not be empty nor hold ',', ':', '=' or spaces")
    return f"{','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}={admin_key}"


class TritonNotInstalled(RuntimeError):
    pass


def pytriton_root() -> Path:
    """The wheel's tritonserver directory (bin/, backends/, python_backend_stubs/)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise TritonNotInstalled(
            "the embedded tritonserver (nvidia-pytriton) exists for Linux x86_64 only; "
            "point MYSPINBOT_TRITON_URL at a Triton server instead"
        )
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalled(
            "tritonserver is not installed: it comes from the pip package nvidia-pytriton"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise TritonNotInstalled(f"no tritonserver binary under {root}")
    return root


def backend_directory(root: Path, dest: Path) -> Path:
    """A backend directory holding the python backend with the stub for this Python: the
    wheel ships one stub per Python version beside the backend."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonNotInstalled(f"nvidia-pytriton has no python backend stub for Python {version}")
    target = dest / "python"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(root / "backends" / "python", target)
    shutil.copy2(stub, target / "triton_python_backend_stub")
    return dest


def triton_env(root: Path, repository: Path) -> dict[str, str]:
    paths = sysconfig.get_paths()
    site = Path(paths["purelib"])
    env = dict(os.environ)
    libs = [str(site / "nvidia_pytriton.libs"), str(sysconfig.get_config_var("LIBDIR"))]
    sites = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))  # differ on lib64 systems
    env["LD_LIBRARY_PATH"] = _prepend(libs, env.get("LD_LIBRARY_PATH"))
    env["PYTHONPATH"] = _prepend(sites, env.get("PYTHONPATH"))
    env["PATH"] = _prepend([str(Path(sys.executable).parent)], env.get("PATH"))
    env[REPOSITORY_ENV] = str(repository)
    return env


def _prepend(first: list[str], current: str | None) -> str:
    # No empty entry: in PATH that would mean the current directory.
    return os.pathsep.join([*first, *(p for p in (current or "").split(os.pathsep) if p)])


class EmbeddedTriton(ServerProcess):
    """tritonserver on `repository` with explicit model control: every model in the
    repository is loaded at start, per-profile LoRA models are loaded later by clients.

    It listens on loopback only unless told otherwise (`myspinbot up` never does), and its
    model-repository API answers 403 without the `admin_key` header (RESTRICTED_APIS);
    without an `admin_key` a random one is made, so it is never open. The key is on
    tritonserver's command line (it reads it from nowhere else), where other accounts on
    the same machine can see it in `ps` (unless /proc is mounted with hidepid): it keeps
    out web pages (a cross-site request, or one through DNS rebinding, cannot know the
    key), not other local accounts.
    """

    def __init__(
        self,
        repository: Path,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        metrics_port: int = 0,
        admin_key: str | None = None,
    ) -> None:
        self.admin_key = admin_key or secrets.token_urlsafe(32)
        restricted_api_flag(self.admin_key)  # refuse a key the flag cannot carry, now
        self.repository = repository.resolve()
        self.data_dir = data_dir
        self.host = host
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.log_path = data_dir / "triton.log"
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def start(self) -> str:
        if self.running:
            return self.url
        root = pytriton_root()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port(self.host)
        self.metrics_port = self.metrics_port or free_port(self.host)
        backends = backend_directory(root, self.data_dir / "backends")
        argv = [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--backend-directory={backends}",
            f"--cache-directory={root / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--http-restricted-api={restricted_api_flag(self.admin_key)}",
            "--allow-grpc=false",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            # No GPU pinned memory on a CPU build; a nonzero pool only warns.
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
        ]
        self._launch(argv, env=triton_env(root, self.repository))
        self._wait_until(
            self._ready, what="tritonserver", timeout_s=_START_TIMEOUT_S, interval_s=0.2
        )
        return self.url

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/v2/health/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
