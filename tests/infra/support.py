"""Helpers for the infrastructure tests: the committed files, the real tools
(check-jsonschema, promtool, prometheus, redis exporter, tritonserver, openssl)
and processes that are always stopped."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
COMPOSE_DEV = ROOT / "compose" / "docker-compose.dev.yml"
PROMETHEUS_YML = ROOT / "infra" / "prometheus" / "prometheus.yml"
TRAEFIK_STATIC = ROOT / "infra" / "traefik" / "traefik.yml"
TRAEFIK_DYNAMIC = ROOT / "infra" / "traefik" / "dynamic"
DASHBOARDS = ROOT / "infra" / "grafana" / "dashboards"
GRAFANA_PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"
PROVISION_SECRETS = ROOT / "infra" / "provision_secrets.sh"
ENV_EXAMPLE = ROOT / ".env.example"
FUNCTIONS = ROOT / "functions"
MINIO_INIT = ROOT / "infra" / "minio" / "init.sh"
EXPORTER_METRICS = Path(__file__).parent / "data" / "exporter_metrics.yml"
DOMAIN = "myspinbot.local"

# Where each tool comes from, for the failure message when it is missing. CI
# installs them; a missing one fails the run rather than skipping half of it.
TOOLS = {
    "check-jsonschema": "pip package check-jsonschema",
    "promtool": "Debian package prometheus",
    "prometheus": "Debian package prometheus",
    "prometheus-redis-exporter": "Debian package prometheus-redis-exporter",
    "openssl": "Debian package openssl",
    "htpasswd": "Debian package apache2-utils",
}


def tool(name: str) -> str:
    # The venv's bin first: pip-installed tools live next to the interpreter.
    found = shutil.which(
        name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if not found:
        pytest.fail(f"`{name}` is not installed: it comes from the {TOOLS[name]}")
    return found


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kw)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll `cond` until it returns something truthy; fail after `timeout` s saying `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
        except (httpx.HTTPError, OSError) as exc:  # not up yet
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


# --- files ---------------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE))


# --- Compose, rendered the way `docker compose [--profile P] config` renders it ----------
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>\w+))"
)


class MissingVariable(ValueError):
    """A ${VAR:?message} whose variable is unset or empty: Compose refuses the file."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, $VAR, and $$ for a literal $."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        value, op, arg = env.get(name), match["op"] or "", match["arg"] or ""
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset else str(value)
        if op.endswith("?"):
            if unset:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return str(value)
        return "" if value is None else value

    return _VARIABLE.sub(substitute, text)


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        # Extension fields (x-*) are not interpolated by Compose either.
        return {
            k: node[k] if str(k).startswith("x-") else _interpolate_tree(v, env)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as Compose's --env-file reads them (no quoting is used here)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


def render_compose(
    env: dict[str, str], profiles: Collection[str] = (), files: tuple[Path, ...] = (COMPOSE,)
) -> dict[str, Any]:
    """The project as `docker compose -f ... --profile ... config` prints it: YAML anchors
    and merge keys resolved, later files merged over earlier ones, variables
    substituted from `env`, services of inactive profiles left out, top-level x-
    fragments dropped. A service that depends on a left-out one is an error, as in
    Compose."""
    merged: dict[str, Any] = {}
    for path in files:
        _merge_compose(merged, load_yaml(path))
    doc = _interpolate_tree({k: v for k, v in merged.items() if not str(k).startswith("x-")}, env)
    active = {
        name: svc
        for name, svc in doc["services"].items()
        if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)
    }
    for name, svc in active.items():
        for dep in svc.get("depends_on", {}):
            if dep not in active:
                raise ValueError(f"service {name} depends on {dep}, which is not enabled")
    doc["services"] = active
    return dict(doc)


def _merge_compose(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Compose's merge of override files: maps merge by key; lists of ports and
    volumes are appended; other values are replaced."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge_compose(into[key], value)
        elif key in {"ports", "expose", "volumes"} and isinstance(into.get(key), list):
            into[key] = into[key] + [v for v in value if v not in into[key]]
        else:
            into[key] = value


@functools.cache
def provisioned() -> Path:
    """A secrets directory made by infra/provision_secrets.sh, once per test session,
    as `infra/provision_secrets.sh` makes infra/secrets/ for a real stack."""
    out = Path(tempfile.mkdtemp(prefix="myspinbot-secrets-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in {"DOMAIN", "BASIC_AUTH_PASSWORD"}}
    result = run(["bash", str(PROVISION_SECRETS), "--out", str(out / "secrets")], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "secrets"


def generated_env() -> dict[str, str]:
    """The passwords provision_secrets.sh generated (its stack.env)."""
    return read_env_file(provisioned() / "stack.env")


def stack_env() -> dict[str, str]:
    """What `docker compose --env-file .env --env-file infra/secrets/stack.env` reads,
    with .env copied from .env.example unchanged (the later file wins)."""
    return {**read_env_file(ENV_EXAMPLE), **generated_env()}


def static_exporters() -> dict[str, dict[str, Any]]:
    """Exporters checked against their documented metric names
    (tests/infra/data/exporter_metrics.yml): name -> job, prefixes, names, source."""
    out = {}
    for name, spec in load_yaml(EXPORTER_METRICS)["exporters"].items():
        names = set(spec.get("metrics", []))
        for family in spec.get("histograms", []):
            names |= {family + suffix for suffix in ("_bucket", "_sum", "_count")}
        out[name] = {**spec, "names": names, "prefixes": tuple(spec["prefixes"])}
    return out


def exporter_for(metric: str) -> str | None:
    """The static exporter whose prefix `metric` has, if any."""
    for name, spec in static_exporters().items():
        if metric.startswith(spec["prefixes"]):
            return name
    return None


TEMPLATE = re.compile(r"\{\{\s*env \"DOMAIN\"\s*\|\s*default \"([^\"]+)\"\s*\}\}")


def traefik_dynamic(domain: str | None = None) -> dict[str, Any]:
    """The dynamic config as Traefik sees it after rendering its Go templates."""
    merged: dict[str, Any] = {}
    for path in sorted(TRAEFIK_DYNAMIC.glob("*.yml")):
        text = TEMPLATE.sub(lambda m: domain or m.group(1), path.read_text())
        assert "{{" not in text, f"{path.name}: a template this test does not render"
        _merge(merged, yaml.safe_load(text) or {})
    return merged


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Traefik merges its dynamic files: maps by key, lists by concatenation."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + value
        else:
            assert key not in into, f"{key} is defined in two dynamic files"
            into[key] = value


VOLUME = re.compile(r"^(?P<source>\$\{[^}]*\}[^:]*|[^:]+):(?P<target>[^:]+)(?::(?P<mode>\w+))?$")


def split_volume(spec: str) -> tuple[str, str]:
    """A short-syntax volume `source:target[:mode]` (the source may be ${VAR:-default}/file)."""
    match = VOLUME.match(spec)
    assert match, f"cannot parse volume {spec!r}"
    return match["source"], match["target"]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep theirs inside


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL expression) for every query."""
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield name, panel["title"], target["expr"]


# Grafana's built-in interval variables, replaced as Grafana would for a 1 s scrape.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# --- PromQL --------------------------------------------------------------------------------
_KEYWORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right", "bool"),
    *("and", "or", "unless", "offset", "inf", "nan", "atan2", "start", "end"),
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects.

    Strings, label matchers, ranges and grouping label lists are removed first;
    what is left that is neither a function call nor a keyword is a metric name.
    Durations and numbers start with a digit, so they never match.
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposition_names(text: str) -> set[str]:
    """Every series name an exporter's /metrics declares, including families that
    have no samples yet (a labelled counter nobody has incremented)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["", "_sum", "_count"],
        }.get(family.type, [""])
        names.update(family.name + s for s in suffixes)
    return names


# --- processes -----------------------------------------------------------------------------
class Process:
    """A server the test started: its own process group, a log file, always stopped."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its children (Triton's stubs) share the group
            )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def check_alive(self) -> None:
        # waitid(WNOWAIT) rather than poll(): a dead leader stays unreaped, so
        # stop() can still clean up its group safely.
        info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            raise AssertionError(f"{self.name} exited ({info.si_status}):\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float = 60) -> None:
        def ready() -> bool:
            self.check_alive()
            return httpx.get(url, timeout=2).status_code == 200

        try:
            wait_for(ready, timeout, f"{self.name} at {url}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def stop(self, grace: float = 15) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left of it.

        The leader is not reaped until the end, so its pid (the group id) cannot
        be reused by an unrelated process while we signal the group.
        """
        if self.proc.returncode is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is our child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
