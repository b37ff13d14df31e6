"""infra/prometheus/prometheus.yml passes Prometheus's own checker."""

from __future__ import annotations

from pathlib import Path

from tests.infra.support import PROMETHEUS_YML, TRAEFIK_STATIC, load_yaml, run, tool


def test_promtool_accepts_the_config() -> None:
    result = run([tool("promtool"), "check", "config", str(PROMETHEUS_YML)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    # The check above means something only if promtool really validates.
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROMETHEUS_YML.read_text().replace("scrape_configs:", "scrape_config:"))
    result = run([tool("promtool"), "check", "config", str(broken)])
    assert result.returncode != 0


def test_the_traefik_job_scrapes_traefiks_metrics_entry_point() -> None:
    (job,) = [j for j in load_yaml(PROMETHEUS_YML)["scrape_configs"] if j["job_name"] == "traefik"]
    static = load_yaml(TRAEFIK_STATIC)
    entry = static["entryPoints"][static["metrics"]["prometheus"]["entryPoint"]]
    port = entry["address"].rsplit(":", 1)[1]
    assert job["static_configs"] == [{"targets": [f"traefik:{port}"]}]
    assert job.get("metrics_path", "/metrics") == "/metrics"  # Traefik's default path
