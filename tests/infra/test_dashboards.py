"""Grafana provisioning and dashboards, statically (the live check of their
queries is in test_live_metrics.py)."""

from __future__ import annotations

import pytest

from tests.infra.support import (
    GRAFANA_PROVISIONING,
    compose,
    dashboard_queries,
    dashboards,
    grafana_to_promql,
    load_yaml,
    metric_names,
    panels,
    split_volume,
)

# The dashboards the stack promises (docs/deploy.md).
EXPECTED = {
    "jobs.json": "MySpinBot / Jobs",
    "realtime.json": "MySpinBot / Realtime",
    "api.json": "MySpinBot / API",
    "redis.json": "MySpinBot / Redis",
    "triton.json": "MySpinBot / Triton",
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
