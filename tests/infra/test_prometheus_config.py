"""infra/prometheus/prometheus.yml passes Prometheus's own checker."""

from __future__ import annotations

from pathlib import Path

from tests.infra.support import PROMETHEUS_YML, TRAEFIK_STATIC, load_yaml, run, tool

METRICS_TOKEN_FILE = "/etc/prometheus/secrets/metrics.token"  # compose mounts it there


def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    # promtool checks that the gateway's token file exists: point it at a local one.
    token = tmp_path / "metrics.token"
    token.write_text("a-token\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_YML.read_text().replace(METRICS_TOKEN_FILE, str(token)))
    result = run([tool("promtool"), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_gateway_job_sends_the_metrics_token() -> None:
    (job,) = [j for j in load_yaml(PROMETHEUS_YML)["scrape_configs"] if j["job_name"] == "gateway"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN_FILE}


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
