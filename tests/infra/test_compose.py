"""compose/: valid against the Compose specification, and wired consistently.

There is no Docker engine on CI machines, so the stack is checked statically:
the schema with check-jsonschema (its vendored compose-spec, offline) and the
wiring here: routes, dependencies, scrape targets, images, volumes, env.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from myspinbot.settings import Settings
from tests.infra.support import (
    COMPOSE,
    COMPOSE_DEV,
    DOMAIN,
    ENV_EXAMPLE,
    FUNCTIONS,
    PROMETHEUS_YML,
    ROOT,
    TRAEFIK_STATIC,
    compose,
    generated_env,
    interpolate,
    load_yaml,
    read_env_file,
    render_compose,
    run,
    split_volume,
    stack_env,
    tool,
    traefik_dynamic,
)

# Services that start only with `--profile NAME`.
PROFILES = {
    "observability": {"prometheus", "grafana", "cadvisor", "dcgm-exporter"},
    "chatbot": {"ollama", "ollama-pull", "open-webui"},
}
FUNCTION_NAMES = sorted(p.parent.name for p in FUNCTIONS.glob("*/function.yaml"))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def exposed_ports(service: dict[str, Any]) -> set[int]:
    """Container ports a service listens on: `expose` plus `ports` targets."""
    ports = {int(p) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        ports.add(int(str(p).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def check_compose_schema(path: Path) -> None:
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_DEV], ids=lambda p: p.name)
def test_validates_against_the_compose_specification(path: Path) -> None:
    check_compose_schema(path)


@pytest.mark.parametrize(
    "profiles",
    [(), ("observability",), ("chatbot",), ("observability", "chatbot")],
    ids=lambda p: "+".join(p) or "no-profile",
)
def test_the_rendered_project_validates_for_every_profile(
    profiles: tuple[str, ...], tmp_path: Path
) -> None:
    """What `docker compose --env-file .env --env-file stack.env --profile ... config`
    prints: every variable resolves (the required ones from provision_secrets.sh),
    no service depends on one its profiles leave out, and the result is still a valid
    Compose file, with and without the development overlay."""
    for files in [(COMPOSE,), (COMPOSE, COMPOSE_DEV)]:
        rendered = render_compose(stack_env(), profiles, files)
        expected = {n for n, s in services().items() if not s.get("profiles")}
        expected |= {n for p in profiles for n in PROFILES[p]}
        assert set(rendered["services"]) == expected
        out = tmp_path / f"{len(files)}-{'+'.join(profiles)}.yml"
        out.write_text(yaml.safe_dump(rendered, sort_keys=False))
        check_compose_schema(out)
        assert "${" not in out.read_text().replace("$${", ""), "a variable was left unresolved"


def test_every_traefik_router_points_at_a_service_and_port_that_exist() -> None:
    dynamic = traefik_dynamic()["http"]
    svcs = services()
    for name, router in dynamic["routers"].items():
        target = router["service"]
        if target.endswith("@internal"):  # Traefik's own dashboard
            assert target == "api@internal", name
            continue
        assert target in dynamic["services"], f"router {name}: no Traefik service {target}"
        for server in dynamic["services"][target]["loadBalancer"]["servers"]:
            host, port = host_port(server["url"].split("://", 1)[1])
            assert host in svcs, f"router {name}: no compose service {host}"
            assert port in exposed_ports(svcs[host]), f"router {name}: {host} has no port {port}"
        for middleware in router.get("middlewares", []):
            assert middleware in dynamic["middlewares"], (
                f"router {name}: no middleware {middleware}"
            )


def test_traefik_serves_the_documented_hosts_with_admin_auth() -> None:
    routers = traefik_dynamic(DOMAIN)["http"]["routers"]
    hosts = {}
    for name, router in routers.items():
        match = re.match(r"Host\(`([^`]+)`\)", router["rule"])
        assert match, f"router {name}: rule without a Host: {router['rule']}"
        hosts[match.group(1)] = name
    expected = [
        *("api", "ui", "grafana", "prometheus", "s3", "redis", "pgadmin", "proxy", "nuclio"),
        *("minio", "chat"),
    ]
    assert sorted(hosts) == sorted(f"{h}.{DOMAIN}" for h in expected)
    # Dashboards without a login of their own sit behind basic auth.
    for name in ("prometheus", "redis", "proxy", "nuclio"):
        assert "admin-auth" in routers[name].get("middlewares", []), name
    # The gateway's /metrics is for Prometheus on the internal network only.
    for name in ("api", "ui"):
        assert "!Path(`/metrics`)" in routers[name]["rule"], name


def test_traefik_files_are_mounted_where_its_config_looks() -> None:
    static = load_yaml(TRAEFIK_STATIC)
    traefik = services()["traefik"]
    mounts = {target: source for source, target in map(split_volume, traefik["volumes"])}
    assert static["providers"]["file"]["directory"] in mounts
    assert mounts["/etc/traefik/traefik.yml"].endswith("infra/traefik/traefik.yml")
    entry_ports = {n: host_port(e["address"])[1] for n, e in static["entryPoints"].items()}
    # web and websecure are published; the metrics entry point only on the internal network.
    assert {entry_ports["web"], entry_ports["websecure"]} == {
        int(p.rsplit(":", 1)[1]) for p in traefik["ports"]
    }
    assert entry_ports["metrics"] in exposed_ports(traefik)
    assert static["metrics"]["prometheus"]["entryPoint"] == "metrics"
    # Routers without their own entryPoints attach to the default ones: websecure only.
    assert [n for n, e in static["entryPoints"].items() if e.get("asDefault")] == ["websecure"]
    assert all("entryPoints" not in r for r in traefik_dynamic()["http"]["routers"].values())
    assert "ping" in static, "the compose healthcheck (`traefik healthcheck`) needs ping"
    # Certificates and the htpasswd file come from the secrets directory, under the
    # names provision_secrets.sh writes (tests/infra/test_secrets.py runs it), one file
    # at a time: the stack's other passwords (stack.env) are not Traefik's to read.
    secret_mounts = {t: s for t, s in mounts.items() if "SECRETS_DIR" in s}
    assert {Path(s).name for s in secret_mounts.values()} == {
        "wildcard.crt",
        "wildcard.key",
        "htpasswd",
    }
    assert all(Path(t).name == Path(s).name for t, s in secret_mounts.items())
    dynamic = traefik_dynamic()
    files = [dynamic["http"]["middlewares"]["admin-auth"]["basicAuth"]["usersFile"]]
    for cert in dynamic["tls"]["certificates"]:
        files += [cert["certFile"], cert["keyFile"]]
    assert set(files) <= set(secret_mounts), files


def test_every_depends_on_target_has_a_healthcheck() -> None:
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with a condition"
        for target, spec in deps.items():
            assert target in svcs, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_completed_successfully":
                # A one-shot job (bucket creation) has no health: it finishes.
                assert svcs[target].get("restart") == "no", f"{target} is not a one-shot"
                continue
            assert condition == "service_healthy", f"{name} -> {target}: {condition}"
            check = svcs[target].get("healthcheck", {}).get("test")
            assert check and check != ["NONE"], (
                f"{name} waits for {target}, which has no healthcheck"
            )


def test_services_outside_a_profile_do_not_depend_on_it() -> None:
    svcs = services()
    for profile, members in PROFILES.items():
        profiled = {n for n, s in svcs.items() if profile in s.get("profiles", [])}
        assert profiled == members, profile
        for name, svc in svcs.items():
            if name not in profiled:
                assert not profiled & set(svc.get("depends_on", {})), name


def test_every_prometheus_target_is_a_compose_service() -> None:
    svcs = services()
    for job in load_yaml(PROMETHEUS_YML)["scrape_configs"]:
        addresses = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        for sd in job.get("dns_sd_configs", []):
            addresses += [f"{n}:{sd['port']}" for n in sd["names"]]
        assert addresses, f"job {job['job_name']} has no targets"
        for address in addresses:
            host, port = host_port(address)
            assert host in svcs, f"job {job['job_name']}: no compose service {host}"
            assert port in exposed_ports(svcs[host]), f"job {job['job_name']}: {host}:{port}"
    jobs = {j["job_name"] for j in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    assert {
        "gateway",
        "triton",
        "redis",
        "minio",
        "cadvisor",
        "dcgm-exporter",
        "traefik",
        *FUNCTION_NAMES,
    } <= jobs


IMAGE = re.compile(
    r"^(?:[\w.-]+(?::\d+)?/)?[\w./-]+:(?P<tag>[\w][\w.-]*)(?:@sha256:[0-9a-f]{64})?$"
)


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_DEV], ids=lambda p: p.name)
def test_every_image_is_pinned(path: Path) -> None:
    for name, svc in load_yaml(path)["services"].items():
        if "image" not in svc:
            assert path == COMPOSE_DEV, f"{name}: no image"
            continue
        match = IMAGE.match(svc["image"])
        assert match, f"{name}: image {svc['image']!r} has no tag"
        assert match["tag"] not in {"latest", "stable", "main"}, f"{name}: floating tag"


def test_functions_and_gateway_run_the_project_runtime() -> None:
    svcs = services()
    for name in FUNCTION_NAMES:
        assert name in svcs, f"functions/{name} has no compose service"
        assert svcs[name]["command"] == ["function", name]
        assert svcs[name]["environment"]["MYSPINBOT_METRICS_PORT"] == "9100"
        assert 9100 in exposed_ports(svcs[name])
    assert svcs["gateway"]["command"] == ["gateway"]
    # The status function's http trigger is where the gateway sends queries.
    url = svcs["gateway"]["environment"]["MYSPINBOT_STATUS_URL"]
    host, port = host_port(url.split("://", 1)[1])
    assert host == "status" and port == int(svcs["status"]["environment"]["FUNCTION_HTTP_PORT"])
    for gpu_user in ("train", "triton", "dcgm-exporter", "ollama"):
        devices = svcs[gpu_user]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_the_cli_accepts_what_the_entrypoint_passes() -> None:
    help_run = run([sys.executable, "-m", "myspinbot", "function", "run", "--help"], cwd=ROOT)
    assert help_run.returncode == 0, help_run.stderr
    for option in ("--replica", "--http-port"):
        assert option in help_run.stdout
    help_gw = run([sys.executable, "-m", "myspinbot", "gateway", "--help"], cwd=ROOT)
    assert "--host" in help_gw.stdout and "--port" in help_gw.stdout


def test_the_entrypoint_runs_the_named_function(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    # A stand-in python that prints its arguments (the replica index is a python call too).
    fake.write_text('#!/bin/sh\nif [ "$1" = -c ]; then echo 7; else echo "$@"; fi\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "MYSPINBOT_FUNCTIONS_ROOT": str(FUNCTIONS)}
    entry = str(ROOT / "compose" / "entrypoint.sh")
    out = run(["sh", entry, "function", "status"], env={**env, "FUNCTION_HTTP_PORT": "8080"})
    assert out.stdout.split() == [
        "-m",
        "myspinbot",
        "function",
        "run",
        str(FUNCTIONS / "status"),
        "--replica",
        "7",
        "--http-port",
        "8080",
    ], out.stderr
    out = run(["sh", entry, "function", "ws-relay"], env={**env, "MYSPINBOT_REPLICA": "3"})
    assert out.stdout.split()[-2:] == ["--replica", "3"]
    out = run(["sh", entry, "gateway"], env=env)
    assert out.stdout.split() == [
        "-m",
        "myspinbot",
        "gateway",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert run(["sh", entry, "function", "nope"], env=env).returncode == 2


def test_platform_environment_names_are_settings() -> None:
    fields = {f"MYSPINBOT_{name.upper()}" for name in Settings.model_fields}
    for name, svc in services().items():
        for var in svc.get("environment", {}):
            if var.startswith("MYSPINBOT_"):
                assert var in fields, f"{name}: {var} is not a setting (myspinbot/settings.py)"


def test_volumes_are_named_and_bind_mounts_exist() -> None:
    doc = compose()
    declared = set(doc["volumes"])
    used = set()
    for name, svc in doc["services"].items():
        for volume in svc.get("volumes", []):
            source, _ = split_volume(volume)
            if source.startswith("${SECRETS_DIR"):
                # Written by provision_secrets.sh (git-ignored): a file it makes.
                path = Path(interpolate(source, {}))
                assert path.parent == Path("../infra/secrets"), f"{name}: {source}"
                assert path.name in SECRETS_FILES, f"{name}: {source} is not made by provision"
                continue
            if source.startswith("."):
                # triton-models/ is the (possibly empty) model repository.
                path = (COMPOSE.parent / source).resolve()
                assert path.exists() or path == ROOT / "triton-models", f"{name}: {source}"
            elif not source.startswith("/"):
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


# Triton is alone on its own network with the services that talk to it (issue 11).
TRITON_NETWORK = {
    "triton": ["triton"],
    "generate": ["internal", "triton"],
    "prometheus": ["internal", "triton"],
}


def test_one_internal_network_and_only_traefik_publishes_ports() -> None:
    doc = compose()
    assert list(doc["networks"]) == ["internal", "triton"]
    assert doc["networks"]["triton"]["internal"] is True  # no route out of it
    for name, svc in doc["services"].items():
        assert svc.get("networks") == TRITON_NETWORK.get(name, ["internal"]), name
        if name != "traefik":
            assert "ports" not in svc, f"{name} publishes ports; route it through Traefik"


def _variables(text: str) -> dict[str, str]:
    """${VAR}, ${VAR:-default}, ${VAR:?error} -> {VAR: modifier}; $$ is a literal $."""
    text = text.replace("$$", "")
    return {m[1]: m[2] or "" for m in re.finditer(r"\$\{(\w+)(:[-?][^}]*)?\}", text)}


# provision_secrets.sh's files that compose mounts (tests/infra/test_secrets.py runs it).
SECRETS_FILES = {"wildcard.crt", "wildcard.key", "htpasswd", "redis.conf", "metrics.token"}


def test_every_variable_is_in_env_example_or_generated() -> None:
    """Configuration comes from .env (copied from .env.example), passwords from the
    stack.env that provision_secrets.sh generates: nothing else is needed, and every
    required variable has a value from one of them."""
    example, generated = read_env_file(ENV_EXAMPLE), generated_env()
    for path in (COMPOSE, COMPOSE_DEV):
        for var, modifier in _variables(path.read_text()).items():
            assert var in example or var in generated, (
                f"{path.name}: ${{{var}}} is neither in .env.example nor generated"
            )
            if modifier.startswith(":?"):
                assert example.get(var) or generated.get(var), f"nothing gives {var} a value"
    # Every generated secret is used: a leftover would be a password nobody checks.
    used = {v for p in (COMPOSE, COMPOSE_DEV) for v in _variables(p.read_text())}
    assert set(generated) <= used, f"generated but unused: {set(generated) - used}"


def test_dev_overlay_extends_existing_services() -> None:
    base, dev = services(), load_yaml(COMPOSE_DEV)["services"]
    assert set(dev) <= set(base)
    for name in ["gateway", *FUNCTION_NAMES]:
        assert dev[name]["build"]["target"] == "dev", name
        assert dev[name]["environment"]["DEBUGPY_PORT"], name
        assert all(p.startswith("127.0.0.1:") for p in dev[name]["ports"]), name
