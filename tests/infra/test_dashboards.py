"""Grafana provisioning and dashboards, statically (the live check of their
queries is in test_live_metrics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.infra.support import (
    GRAFANA_PROVISIONING,
    PROMETHEUS_YML,
    compose,
    dashboard_queries,
    dashboards,
    exporter_for,
    grafana_to_promql,
    load_yaml,
    metric_names,
    panels,
    run,
    split_volume,
    static_exporters,
    tool,
)

# The dashboards the stack promises (docs/deploy.md).
EXPECTED = {
    "jobs.json": "MySpinBot / Jobs",
    "realtime.json": "MySpinBot / Realtime",
    "api.json": "MySpinBot / API",
    "redis.json": "MySpinBot / Redis",
    "triton.json": "MySpinBot / Triton",
    "gpu.json": "MySpinBot / GPU",
    "containers.json": "MySpinBot / Containers",
    "minio.json": "MySpinBot / MinIO",
    "traefik.json": "MySpinBot / Traefik",
    "model-serving.json": "MySpinBot / Model serving",
}

# Dashboards about one exporter: every metric they name (besides Prometheus's own
# `up`) comes from it.
ONE_EXPORTER = {
    "gpu.json": "dcgm-exporter",
    "containers.json": "cadvisor",
    "minio.json": "minio",
    "traefik.json": "traefik",
}


def datasource() -> dict[str, object]:
    (ds,) = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    return dict(ds)


def test_the_dashboards_exist_with_unique_uids() -> None:
    boards = dashboards()
    assert {name: b["title"] for name, b in boards.items()} == EXPECTED
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)


def test_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    ds = datasource()
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    for name, board in dashboards().items():
        cells: set[tuple[int, int]] = set()
        ids = [p["id"] for p in panels(board)]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        for panel in panels(board):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name} / {panel['title']}: wider than the grid"
            area = {
                (pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])
            }
            assert not cells & area, f"{name} / {panel['title']}: overlaps another panel"
            cells |= area
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{name} / {panel['title']}: no query"
            for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
                assert ref == {"type": "prometheus", "uid": ds["uid"]}, f"{name} / {panel['title']}"


def test_grafana_mounts_match_the_provisioning() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {target: source for source, target in map(split_volume, grafana["volumes"])}
    provider = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "myspinbot.yml")["providers"][0]
    assert mounts[provider["options"]["path"]] == "../infra/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "../infra/grafana/provisioning"


def test_every_query_names_at_least_one_metric() -> None:
    for board, panel, expr in dashboard_queries():
        assert metric_names(grafana_to_promql(expr)), f"{board} / {panel}: {expr}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (type, le) (rate(a_bucket{state="x"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum by (le) (rate(b_bucket[1m])))", {"b_bucket"}),
        ("rate(c_total[1m]) / on (job) group_left (le) d offset 5m", {"c_total", "d"}),
        ('topk(5, e) and f{name=~"by|on"} * 1e6', {"e", "f"}),
        ('up{job=~"train|status"} == bool 1', {"up"}),
        ("sum without (instance) (g:recorded:rate5m)", {"g:recorded:rate5m"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_query_parses_in_promtool(tmp_path: Path) -> None:
    """Each query becomes a recording rule; `promtool check rules` parses them all with
    Prometheus's own PromQL parser (the live test also runs them in Prometheus)."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, _, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr
    # The check means something: a broken query is refused.
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {"name": "x", "rules": [{"record": "x:y", "expr": "sum by (le (rate(x[1m]))"}]}
                ]
            }
        )
    )
    assert run([tool("promtool"), "check", "rules", str(path)]).returncode != 0


def test_metrics_of_exporters_that_cannot_run_here_are_documented_ones() -> None:
    """cAdvisor, DCGM, MinIO and Traefik cannot run here: their metric names are checked
    against the names their documentation lists for the pinned version
    (tests/infra/data/exporter_metrics.yml)."""
    exporters = static_exporters()
    unknown = []
    for board, panel, expr in dashboard_queries():
        for name in sorted(metric_names(grafana_to_promql(expr))):
            exporter = exporter_for(name)
            if exporter and name not in exporters[exporter]["names"]:
                unknown.append(f"{board} / {panel}: {name} is not a documented {exporter} metric")
    assert not unknown, "\n".join(unknown)


def test_the_documented_lists_match_the_pinned_exporters() -> None:
    """Each list names the scrape job and the image compose runs: bumping an image
    without revisiting its list fails here."""
    jobs = {j["job_name"] for j in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    services = compose()["services"]
    for name, spec in static_exporters().items():
        assert spec["job"] in jobs, f"{name}: no scrape job {spec['job']}"
        assert services[spec["job"]]["image"] == spec["image"], name
        assert spec["source"].startswith("https://"), name
        assert all(n.startswith(spec["prefixes"]) for n in spec["names"]), name


@pytest.mark.parametrize("board", sorted(ONE_EXPORTER))
def test_exporter_dashboards_query_their_exporter(board: str) -> None:
    exporter = ONE_EXPORTER[board]
    for name, panel, expr in dashboard_queries():
        if name != board:
            continue
        for metric in metric_names(grafana_to_promql(expr)) - {"up"}:
            assert exporter_for(metric) == exporter, f"{panel}: {metric}"
        if "up{" in expr:
            assert f'job="{exporter}"' in expr, f"{panel}: up of another job"


def test_the_model_serving_view_puts_the_gpu_beside_tritons_queue_and_compute_time() -> None:
    board = dashboards()["model-serving.json"]

    def panel_naming(metric: str) -> dict[str, object]:
        (found,) = [
            p
            for p in panels(board)
            if any(
                metric in metric_names(grafana_to_promql(t["expr"])) for t in p.get("targets", [])
            )
            and p["type"] == "timeseries"
            and p["gridPos"]["y"] < 17
        ]
        return found

    queue = panel_naming("nv_inference_queue_duration_us")
    compute = panel_naming("nv_inference_compute_infer_duration_us")
    utilisation = panel_naming("DCGM_FI_DEV_GPU_UTIL")
    memory = panel_naming("DCGM_FI_DEV_FB_USED")
    for triton, gpu in [(queue, utilisation), (compute, memory)]:
        t, g = triton["gridPos"], gpu["gridPos"]
        assert t["y"] == g["y"] and t["h"] == g["h"], "side by side, on the same rows"
        assert t["x"] + t["w"] <= g["x"], "Triton on the left, the GPU on the right"
