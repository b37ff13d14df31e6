"""Triton in the compose stack: NVIDIA's image serving triton-models/ the way `myspinbot up`
serves it (explicit model control, every model loaded at start, LoRA models loaded later
by the generate function), after a one-shot `export` has written the ONNX graphs.

No Docker engine here: the wiring is checked statically, and the entrypoint's `export`
role runs for real (its up-to-date check) with the export itself stubbed out.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from myspinbot.netutil import free_port
from myspinbot.triton import repository as repo
from myspinbot.triton.repository import ADMIN_KEY_HEADER
from myspinbot.triton.server import (
    RESTRICTED_APIS,
    backend_directory,
    pytriton_root,
    triton_env,
)
from tests.infra.support import (
    COMPOSE,
    PROMETHEUS_YML,
    ROOT,
    VOLUME,
    Process,
    compose,
    dashboards,
    generated_env,
    load_yaml,
    metric_names,
    panels,
    render_compose,
    run,
    stack_env,
)

PLATFORM_DOCKERFILE = ROOT / "compose" / "Dockerfile"
ENTRYPOINT = ROOT / "compose" / "entrypoint.sh"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
PLATFORM_UID = "10001"


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def flags(command: list[str]) -> dict[str, str]:
    """`--name=value` arguments of a command line."""
    return dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) for each short-syntax volume; mode "rw" when not given."""
    out = {}
    for spec in service.get("volumes", []):
        match = VOLUME.match(spec)
        assert match, spec
        out[match["target"]] = (match["source"], match["mode"] or "rw")
    return out


def named_volume_at(service: dict[str, Any], target: str) -> tuple[str, str]:
    source, mode = mounts(service)[target]
    assert source in compose()["volumes"], f"{source} is not a named volume"
    return source, mode


def size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([kmg]?)b?", str(value).lower())
    assert match, value
    return int(match[1]) * int(1024 ** " kmg".index(str(match[2] or " ")))


def gpu_reserved(service: dict[str, Any]) -> bool:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    return any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def dockerfile_of(service: dict[str, Any]) -> Path:
    build = service["build"]
    context = (COMPOSE.parent / str(build["context"])).resolve()
    return context / str(build.get("dockerfile", "Dockerfile"))


def workdir(dockerfile: Path) -> str:
    (path,) = re.findall(r"^WORKDIR\s+(\S+)", dockerfile.read_text(), re.M)
    return str(path)


# --- the image ---------------------------------------------------------------------------


def test_triton_is_built_from_nvidias_image_with_onnx_runtime() -> None:
    triton = services()["triton"]
    dockerfile = dockerfile_of(triton)
    assert dockerfile == ROOT / "compose" / "triton.Dockerfile"
    text = dockerfile.read_text()
    assert re.findall(r"^FROM\s+(\S+)", text, re.M) == [TRITON_IMAGE]
    # What the python-backend models import (triton-models/unet/1/model.py), pinned.
    pins = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([0-9][^"]*)"', text))
    assert {"onnxruntime-gpu", "onnx", "safetensors", "numpy"} <= set(pins), pins
    assert pins["numpy"].startswith("1."), "numpy must stay below 2"
    assert "onnxruntime" not in pins, "the CPU-only wheel would shadow onnxruntime-gpu"
    code = repo.model_code().read_text()
    for module in ("onnxruntime", "numpy"):
        assert f"import {module}" in code
    for module in ("onnx", "safetensors"):
        assert f"from {module}" in code or f"import {module}" in code


# --- the triton service ------------------------------------------------------------------


def test_triton_serves_the_repository_like_the_embedded_server() -> None:
    triton = services()["triton"]
    command = triton["command"]
    assert command[0] == "tritonserver"
    args = flags(command)
    assert args["model-control-mode"] == "explicit"
    assert args["load-model"] == "*"
    repository = args["model-repository"]
    # LoRA models find the base UNet's ONNX file through this (triton-models/unet/1/model.py).
    assert triton["environment"][repo.REPOSITORY_ENV] == repository
    # A named volume, read-only: only the export writes it.
    _, mode = named_volume_at(triton, repository)
    assert mode == "ro"
    assert gpu_reserved(triton)
    # The python backend moves every tensor through /dev/shm.
    assert size_bytes(triton["shm_size"]) >= 1024**3
    exposed = {int(p) for p in triton["expose"]}
    assert {int(args["http-port"]), int(args["metrics-port"])} <= exposed
    check = " ".join(triton["healthcheck"]["test"])
    assert f"127.0.0.1:{args['http-port']}/v2/health/ready" in check


def test_triton_waits_for_the_export_of_the_same_repository() -> None:
    svcs = services()
    triton, export = svcs["triton"], svcs["export"]
    assert triton["depends_on"]["export"]["condition"] == "service_completed_successfully"
    assert export["restart"] == "no"
    assert export["command"] == ["export"]
    # The export runs the platform image on the GPU (fp16 there).
    assert export["image"] == svcs["generate"]["image"]
    assert dockerfile_of(export) == PLATFORM_DOCKERFILE
    assert gpu_reserved(export)
    # It writes the volume Triton reads.
    target = export["environment"][repo.REPOSITORY_ENV]
    volume, mode = named_volume_at(export, target)
    assert mode == "rw"
    triton_repository = flags(triton["command"])["model-repository"]
    assert named_volume_at(triton, triton_repository)[0] == volume


def test_export_and_generate_see_the_committed_model_code() -> None:
    """The image leaves triton-models/ out (.dockerignore), but the export copies its configs
    and model code into the repository and generate sends the model code with each LoRA:
    both find it at the checkout's place beside the package (repository.CHECKOUT_REPOSITORY)."""
    assert repo.CHECKOUT_REPOSITORY == ROOT / "triton-models"
    in_image = f"{workdir(PLATFORM_DOCKERFILE)}/triton-models"
    assert re.search(r"^COPY myspinbot/ myspinbot/", PLATFORM_DOCKERFILE.read_text(), re.M)
    for name in ("export", "generate"):
        source, mode = mounts(services()[name])[in_image]
        assert (COMPOSE.parent / source).resolve() == repo.CHECKOUT_REPOSITORY, name
        assert mode == "ro", name


def test_generate_reaches_triton_over_http() -> None:
    svcs = services()
    generate, triton = svcs["generate"], svcs["triton"]
    host, _, port = generate["environment"]["MYSPINBOT_TRITON_URL"].partition(":")
    assert host == "triton"
    assert port == flags(triton["command"])["http-port"]
    assert generate["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "MYSPINBOT_LORA_MODELS_MAX" in generate["environment"]


def test_the_model_services_share_one_base_model_and_cache() -> None:
    """A LoRA fits only the base model it was trained on: train, export and generate read
    the same MYSPINBOT_BASE_MODEL and keep downloads in the same volume."""
    svcs = services()
    envs = {n: svcs[n]["environment"] for n in ("train", "export", "generate")}
    for var in ("MYSPINBOT_BASE_MODEL", "MYSPINBOT_DATA_DIR", "HF_HOME"):
        assert len({json.dumps(env.get(var, "<missing>")) for env in envs.values()}) == 1, var
    assert envs["train"]["MYSPINBOT_BASE_MODEL"] is None  # from .env or the shell
    models_dir = f"{envs['train']['MYSPINBOT_DATA_DIR']}/models"
    assert envs["train"]["HF_HOME"].startswith(models_dir + "/")
    volumes = {named_volume_at(svcs[n], models_dir) for n in envs}
    assert len(volumes) == 1 and next(iter(volumes))[1] == "rw"


def test_platform_volumes_are_writable_by_the_image_user() -> None:
    """Docker gives an empty named volume the owner of its mount point, and the platform
    image runs as an unprivileged user: every named volume it mounts read-write must be a
    directory the image creates for that user."""
    text = PLATFORM_DOCKERFILE.read_text().replace("\\\n", " ")
    created = {p for run_ in re.findall(r"mkdir -p ([^&\n]+)", text) for p in run_.split()}
    owned = {p for run_ in re.findall(r"chown -R \S+ ([^&\n]+)", text) for p in run_.split()}
    assert re.search(rf"useradd --uid {PLATFORM_UID} --user-group\b.* myspinbot\b", text)
    volumes = set(compose()["volumes"])
    for name, svc in services().items():
        if svc.get("build", {}).get("dockerfile") != "compose/Dockerfile":
            continue
        for target, (source, mode) in mounts(svc).items():
            if source in volumes and mode == "rw":
                assert target in created, f"{name}: the image does not create {target}"
                assert any(target == o or target.startswith(o + "/") for o in owned), target
    # Triton's image has the repository's mount point too: whichever container mounts the
    # empty volume first, the export (uid 10001) can write it.
    triton_text = dockerfile_of(services()["triton"]).read_text()
    repository = flags(services()["triton"]["command"])["model-repository"]
    assert f"chown {PLATFORM_UID}:{PLATFORM_UID} {repository}" in triton_text


# --- metrics -----------------------------------------------------------------------------


def test_prometheus_scrapes_tritons_metrics_port() -> None:
    jobs = {j["job_name"]: j for j in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    targets = [t for sc in jobs["triton"]["static_configs"] for t in sc["targets"]]
    port = flags(services()["triton"]["command"])["metrics-port"]
    assert targets == [f"triton:{port}"]


def test_the_triton_dashboard_shows_inference_rate_queue_and_compute_time() -> None:
    board = dashboards()["triton.json"]
    names = set()
    for panel in panels(board):
        for target in panel.get("targets", []):
            names |= metric_names(target.get("expr", "").replace("$__rate_interval", "1m"))
    assert {
        "nv_inference_request_success",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
    } <= names


# --- the entrypoint's export role --------------------------------------------------------


def test_the_cli_accepts_what_the_export_role_passes() -> None:
    result = run([sys.executable, "-m", "myspinbot", "export", "--help"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "--output" in result.stdout


@pytest.fixture
def export_env(tmp_path: Path) -> dict[str, Any]:
    """A base model, a repository holding an up-to-date export of it (stand-in graphs), and
    a `python` that runs `-c` programs for real but only echoes anything else (the export)."""
    from myspinbot.models.loading import resolve_base_model

    base = tmp_path / "base"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (base / part).mkdir(parents=True)
    index = {p: ["diffusers", "X"] for p in ("unet", "vae", "text_encoder", "tokenizer")}
    (base / "model_index.json").write_text(json.dumps({**index, "scheduler": ["d", "S"]}))
    (base / "unet" / "config.json").write_text('{"sample_size": 8}')
    (base / "vae" / "config.json").write_text('{"block_out_channels": [4, 8]}')
    data = tmp_path / "data"
    model_hash = resolve_base_model(str(base), data / "models").model_hash

    repository = tmp_path / "repository"
    for model in repo.MODELS:
        (repository / model / "1").mkdir(parents=True)
        (repository / model / "1" / repo.ONNX_FILE).write_bytes(b"graph")
        (repository / model / "config.pbtxt").write_text("old config")
        (repository / model / "1" / repo.MODEL_CODE).write_text("old code")
    info = {
        "base_model": str(base),
        "model_hash": model_hash,
        "dtype": "fp32",
        "native_resolution": 16,
        "exported_on": "cpu",
    }
    (repository / repo.EXPORT_INFO_FILE).write_text(json.dumps(info))

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python"
    real = sys.executable
    shim.write_text(f'#!/bin/sh\nif [ "$1" = -c ]; then exec {real} "$@"; fi\necho "$@"\n')
    shim.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MYSPINBOT_TRITON_REPOSITORY": str(repository),
        "MYSPINBOT_BASE_MODEL": str(base),
        "MYSPINBOT_DATA_DIR": str(data),
        "MYSPINBOT_DEVICE": "cpu",
    }
    return {"env": env, "repository": repository, "info": info}


def run_export(env: dict[str, str]) -> tuple[int, str, str]:
    # From the checkout's root, as the image runs it from WORKDIR: `python -c` and
    # `python -m` import the package beside triton-models/.
    result = run(["sh", str(ENTRYPOINT), "export"], env=env, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


def test_export_keeps_an_up_to_date_repository_and_refreshes_its_code(
    export_env: dict[str, Any],
) -> None:
    repository = export_env["repository"]
    code, out, err = run_export(export_env["env"])
    assert code == 0, err
    assert "-m myspinbot export" not in out, "an up-to-date repository was exported again"
    assert "up to date" in out
    for model in repo.MODELS:
        committed = repo.CHECKOUT_REPOSITORY / model / "config.pbtxt"
        assert (repository / model / "config.pbtxt").read_bytes() == committed.read_bytes()
        served = repository / model / "1" / repo.MODEL_CODE
        assert served.read_bytes() == repo.model_code().read_bytes()
        assert (repository / model / "1" / repo.ONNX_FILE).read_bytes() == b"graph"


@pytest.mark.parametrize(
    "change",
    ["another base model", "exported on another device", "forced", "no export yet"],
)
def test_export_runs_when_the_repository_is_not_up_to_date(
    export_env: dict[str, Any], change: str
) -> None:
    env, repository, info = export_env["env"], export_env["repository"], export_env["info"]
    info_file = repository / repo.EXPORT_INFO_FILE
    if change == "another base model":
        info_file.write_text(json.dumps({**info, "model_hash": "0" * 64}))
    elif change == "exported on another device":
        info_file.write_text(json.dumps({**info, "exported_on": "cuda"}))
    elif change == "forced":
        env = {**env, "EXPORT_FORCE": "1"}
    else:
        info_file.unlink()
    code, out, err = run_export(env)
    assert code == 0, err
    expected = ["-m", "myspinbot", "export", "--output", str(repository)]
    assert out.splitlines()[-1].split() == expected


def test_export_needs_the_repository_path(export_env: dict[str, Any]) -> None:
    env = dict(export_env["env"])
    del env["MYSPINBOT_TRITON_REPOSITORY"]
    code, _, err = run_export(env)
    assert code != 0
    assert "MYSPINBOT_TRITON_REPOSITORY" in err


# --- the model-repository API wants the admin key (issue 11) -------------------------------
def _restriction() -> tuple[dict[str, str], str]:
    """The rendered triton command's flags, and the key provision_secrets.sh generated."""
    project = render_compose(stack_env())
    return flags(project["services"]["triton"]["command"]), generated_env()["TRITON_ADMIN_KEY"]


def test_triton_restricts_its_repository_api_to_the_key_generate_sends() -> None:
    args, key = _restriction()
    expected = f"{','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}={key}"
    assert args["http-restricted-api"] == expected
    assert args["grpc-restricted-protocol"] == expected
    generate = render_compose(stack_env())["services"]["generate"]
    assert generate["environment"]["MYSPINBOT_TRITON_ADMIN_KEY"] == key


def test_the_real_tritonserver_refuses_a_load_without_the_compose_key(tmp_path: Path) -> None:
    """The flags exactly as compose passes them, on the tritonserver of the nvidia-pytriton
    wheel (Triton 2.51.0, the image's version): HTTP and gRPC both refuse the repository
    API without the key and serve it with the key."""
    args, key = _restriction()
    root = pytriton_root()
    (tmp_path / "models").mkdir()
    http_port, grpc_port = free_port(), free_port()
    server = Process(
        "tritonserver",
        [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={tmp_path / 'models'}",
            "--model-control-mode=explicit",
            f"--backend-directory={backend_directory(root, tmp_path / 'backends')}",
            f"--http-port={http_port}",
            f"--grpc-port={grpc_port}",
            "--allow-metrics=false",
            f"--http-restricted-api={args['http-restricted-api']}",
            f"--grpc-restricted-protocol={args['grpc-restricted-protocol']}",
        ],
        tmp_path / "triton.log",
        env=triton_env(root, tmp_path / "models"),
    )
    try:
        http = f"http://127.0.0.1:{http_port}"
        server.wait_http(http + "/v2/health/ready", timeout=120)
        load = http + "/v2/repository/models/anything/load"
        assert httpx.post(load, json={}).status_code == 403
        assert httpx.post(load, json={}, headers={ADMIN_KEY_HEADER: "guess"}).status_code == 403
        index = http + "/v2/repository/index"
        assert httpx.post(index, json={}, headers={ADMIN_KEY_HEADER: key}).status_code == 200

        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            with pytest.raises(InferenceServerException, match="restricted"):
                grpc.get_model_repository_index()
            with pytest.raises(InferenceServerException, match="restricted"):
                grpc.load_model("anything")
            # Over gRPC Triton reads the key from `triton-grpc-protocol-<header>` metadata.
            granted = {f"triton-grpc-protocol-{ADMIN_KEY_HEADER}": key}
            index_reply = grpc.get_model_repository_index(headers=granted)
            assert list(index_reply.models) == []
        finally:
            grpc.close()
    finally:
        server.stop()
