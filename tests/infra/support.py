"""Helpers for the infrastructure tests: the committed files, the real tools
(check-jsonschema, promtool, prometheus, redis exporter, tritonserver, openssl)
and processes that are always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


VOLUME = re.compile(r"^(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(?::(?P<mode>\w+))?$")


def split_volume(spec: str) -> tuple[str, str]:
    """A short-syntax volume `source:target[:mode]` (the source may be ${VAR:-default})."""
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
