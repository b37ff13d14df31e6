"""The committed Prometheus jobs and Grafana dashboards against real exporters.

A real Prometheus (Debian's) runs the scrape jobs of infra/prometheus/prometheus.yml
with each job's targets swapped for local ports: the platform on embedded
defaults (`myspinbot up` with the four real functions), Debian's Redis exporter
on the platform's Redis, and tritonserver from the nvidia-pytriton wheel.
After a job has run, every dashboard query must parse in that Prometheus and
every metric name in it must be one these exporters really export.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from myspinbot.netutil import free_port
from tests.infra.servers import Prometheus, Triton, scrape, start_redis_exporter
from tests.infra.support import (
    FUNCTIONS,
    PROMETHEUS_YML,
    dashboard_queries,
    exporter_for,
    exposition_names,
    grafana_to_promql,
    load_yaml,
    metric_names,
    static_exporters,
    wait_for,
)
from tests.support import RunningPlatform

FUNCTION_NAMES = sorted(p.parent.name for p in FUNCTIONS.glob("*/function.yaml"))

# Scrape jobs with nothing to scrape on this machine, and why.
NOT_HERE = {
    "minio": "the embedded S3 is rclone, not MinIO",
    "cadvisor": "cAdvisor needs a Docker engine",
    "dcgm-exporter": "dcgm-exporter needs an NVIDIA GPU and DCGM",
    "traefik": "Traefik is packaged for neither Debian nor PyPI",
}
# Dashboard metrics from those exporters are checked against their documented metric
# lists instead of a live /metrics (tests/infra/data/exporter_metrics.yml).


@dataclass
class Stack:
    platform: RunningPlatform
    prometheus: Prometheus
    targets: dict[str, list[str]]
    dropped: set[str]
    job: dict[str, Any]


def local_config(
    committed: dict[str, Any], targets: dict[str, list[str]], metrics_token: str
) -> tuple[dict[str, Any], set[str]]:
    """The committed config with each job's targets replaced by local ones and the
    gateway's token file by the local platform's; jobs are otherwise unchanged (name,
    path, scheme, authorization). Scrapes every second."""
    config = copy.deepcopy(committed)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    kept, dropped = [], set()
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            dropped.add(name)
            continue
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": targets[name]}]
        if "credentials_file" in job.get("authorization", {}):
            job["authorization"]["credentials_file"] = metrics_token
        kept.append(job)
    config["scrape_configs"] = kept
    return config, dropped


def run_a_job(platform: RunningPlatform) -> dict[str, Any]:
    """A generate job, followed over the WebSocket to its end, then listed (which
    goes through the status function's http trigger)."""
    job_id = platform.submit()
    with platform.ws(f"?jobId={job_id}", open_timeout=30) as ws:
        for _ in range(1000):
            try:
                msg = json.loads(ws.recv(timeout=60))
            except TimeoutError:
                raise AssertionError(f"job {job_id}: no end event in 60 s") from None
            if msg.get("type") in {"done", "error"}:
                break
    final = platform.wait_state(job_id, {"completed", "failed", "cancelled"})
    assert platform.get("/api/jobs").status_code == 200
    return final


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    with contextlib.ExitStack() as cleanup:
        # Triton starts in the background while the platform boots.
        (work / "triton").mkdir()
        triton = Triton(work / "triton")
        cleanup.callback(triton.stop)
        platform = RunningPlatform(
            work / "platform", functions=[FUNCTIONS / n for n in FUNCTION_NAMES]
        )
        cleanup.callback(platform.stop)
        platform.start(timeout=180)
        exporter, exporter_target = start_redis_exporter(work, platform.redis_url)
        cleanup.callback(exporter.stop)
        triton.wait_ready()
        triton.load_and_infer()

        prometheus_port = free_port()
        targets = {
            "prometheus": [f"127.0.0.1:{prometheus_port}"],
            "gateway": [f"127.0.0.1:{platform.port}"],
            "triton": [triton.metrics_target],
            "redis": [exporter_target],
        }
        for child in platform.state()["children"]:
            if child.get("function"):
                targets.setdefault(child["function"], []).append(
                    f"127.0.0.1:{child['metricsPort']}"
                )
        token_file = str(platform.data_dir / "secrets" / "metrics.token")
        config, dropped = local_config(load_yaml(PROMETHEUS_YML), targets, token_file)
        prometheus = Prometheus(work / "prometheus", config, prometheus_port)
        cleanup.callback(prometheus.stop)
        prometheus.start()

        job = run_a_job(platform)
        wait_for(
            lambda: (
                prometheus.query(
                    'sum(myspinbot_jobs_total{state=~"completed|failed|cancelled"}) > 0'
                )
                and prometheus.query("sum(nv_inference_request_success) > 0")
            ),
            60,
            "Prometheus to scrape the finished job and the Triton inference",
        )
        yield Stack(platform, prometheus, targets, dropped, job)


def test_only_jobs_without_a_local_exporter_are_left_out(stack: Stack) -> None:
    assert stack.dropped == set(NOT_HERE), (
        f"jobs with no local target: {sorted(stack.dropped)}; expected exactly {sorted(NOT_HERE)}"
    )
    assert set(FUNCTION_NAMES) <= stack.targets.keys(), "a function has no scrape job"


def test_prometheus_scrapes_the_gateway_and_every_function(stack: Stack) -> None:
    expected = {(job, t) for job, targets in stack.targets.items() for t in targets}
    seen: dict[tuple[str, str], str] = {}

    def all_up() -> bool:
        seen.clear()
        for r in stack.prometheus.query("up"):
            seen[(r["metric"]["job"], r["metric"]["instance"])] = r["value"][1]
        return all(seen.get(key) == "1" for key in expected)

    try:
        wait_for(all_up, 60, "every target to be up")
    except AssertionError:
        down = {k: seen.get(k, "never scraped") for k in expected if seen.get(k) != "1"}
        raise AssertionError(f"targets not up: {down}") from None
    jobs = {job for job, _ in seen}
    assert {"gateway", *FUNCTION_NAMES} <= jobs


def test_the_job_ran(stack: Stack) -> None:
    # A real generate job (direct narration, no profile) makes a video: the metrics and
    # dashboards below are judged on a run that worked, not on a failure.
    assert stack.job["state"] == "completed", stack.job
    assert stack.job["result"]["video"]["name"] == "video.mp4", stack.job["result"]


def test_every_dashboard_query_parses_in_prometheus(stack: Stack) -> None:
    errors = []
    for board, panel, expr in dashboard_queries():
        try:
            stack.prometheus.query(grafana_to_promql(expr))
        except AssertionError as exc:
            errors.append(f"{board} / {panel}: {expr}\n    {exc}")
    assert not errors, "queries Prometheus rejects:\n" + "\n".join(errors)


def test_every_dashboard_metric_is_exported(stack: Stack) -> None:
    exported = stack.prometheus.metric_names()
    # Families an exporter declares but has no sample of yet (e.g. retries when
    # nothing was retried) are real names too.
    for job, targets in stack.targets.items():
        headers = {"Authorization": f"Bearer {stack.platform.metrics_token}"}
        for target in targets:
            exported |= exposition_names(
                scrape(target, headers=headers if job == "gateway" else None)
            )
    documented = static_exporters()
    assert {spec["job"] for spec in documented.values()} == set(NOT_HERE)
    missing = []
    for board, panel, expr in dashboard_queries():
        for name in sorted(metric_names(grafana_to_promql(expr))):
            exporter = exporter_for(name)
            if name not in (documented[exporter]["names"] if exporter else exported):
                missing.append(f"{board} / {panel}: {name}")
    assert not missing, "metrics nobody exports:\n" + "\n".join(missing)


def test_platform_metrics_are_per_function(stack: Stack) -> None:
    # Dashboards split function metrics by the `function` label the runtime sets.
    result = stack.prometheus.query("sum by (function) (myspinbot_function_invocations_total)")
    functions = {r["metric"].get("function") for r in result}
    assert {"ws-relay", "status"} <= functions, functions
    gateway = stack.platform.metrics()
    assert "myspinbot_jobs_total" in gateway
    # Without the token (or with a user's API token) the gateway gives nothing away.
    for headers in ({}, stack.platform.headers):
        refused = httpx.get(stack.platform.url + "/metrics", headers=headers, timeout=10)
        assert refused.status_code == 401 and "myspinbot_" not in refused.text
