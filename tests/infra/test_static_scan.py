"""The compose and infra files pass a static security scan (issue 11, acceptance 10).

checkov (scripts/test installs it in its own venv) scans what it has frameworks for: the
Dockerfiles (compose/) and secrets in every committed file of compose/, infra/, deploy/
and .env.example. Compose files are no checkov framework, so the compose rules that
checkov applies to Kubernetes pods are checked here directly (pinned images, no
privileged or host-namespace containers, no added capabilities or Docker socket, only
Traefik publishes ports, every long-running service has a healthcheck), next to
tests/infra/test_hardening.py (logins, passwords, scoped credentials). Every finding
must be in static_scan_accepted.yaml with its reason; the Kubernetes manifests have
their own checkov run in tests/deploy/test_kubernetes.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import CHECKOV
from tests.infra.support import COMPOSE_DEV, ROOT, compose, load_yaml

ACCEPTED = Path(__file__).with_name("static_scan_accepted.yaml")
SCANNED = ["compose", "infra", "deploy", ".env.example"]
# A made-up AWS key pair: proof that the secrets framework really looks at the files.
CANARY = "AKIAQ4ZCANARY7XMPL3Q"
CANARY_SECRET = "q7Hc9Lw2Rv5Tz8Kp1Xm4Nb6Yd3Fs0Gj2Ua8Ei5Wo"


def accepted() -> dict[str, Any]:
    return dict(yaml.safe_load(ACCEPTED.read_text()))


def committed_copy(dest: Path) -> Path:
    """The committed files under SCANNED, copied: secrets a developer generated locally
    (infra/secrets/, .env, both git-ignored) are theirs, not the repository's."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--", *SCANNED],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def checkov_reports(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "dockerfile",
            "secrets",
            "--output",
            "json",
            "--quiet",
            "--enable-secret-scan-all-files",  # not only YAML/JSON: scripts, .env.example
            "--skip-download",  # no network: the checks ship with checkov
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert out.stdout.strip(), f"checkov printed nothing:\n{out.stderr[-2000:]}"
    # One JSON document per framework (a list of them, or documents one after another).
    reports: list[dict[str, Any]] = []
    decoder, text, pos = json.JSONDecoder(), out.stdout, 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        doc, pos = decoder.raw_decode(text, pos)
        reports += doc if isinstance(doc, list) else [doc]
    return reports


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    assert CHECKOV.exists(), f"{CHECKOV} missing: scripts/test installs checkov there"
    root = committed_copy(tmp_path_factory.mktemp("scan"))
    (root / "canary").mkdir()
    (root / "canary" / "leaked.env").write_text(
        f"AWS_ACCESS_KEY_ID={CANARY}\nAWS_SECRET_ACCESS_KEY={CANARY_SECRET}\n"
    )
    return checkov_reports(root)


def failed(reports: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(check id, file relative to the scanned root) of every failed check."""
    return {
        (c["check_id"], c["file_path"].lstrip("/"))
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    }


def test_checkov_finds_nothing_unexplained(scan: list[dict[str, Any]]) -> None:
    findings = {f for f in failed(scan) if not f[1].startswith("canary/")}
    allowed = {(e["check"], e["file"]) for e in accepted()["checkov"]}
    assert all(e["reason"].strip() for e in accepted()["checkov"])
    unexplained = sorted(findings - allowed)
    assert not unexplained, f"new findings (fix, or accept with a reason): {unexplained}"
    stale = sorted(allowed - findings)
    assert not stale, f"accepted findings that are gone (delete their entries): {stale}"
    dockerfiles = [r for r in scan if r.get("check_type") == "dockerfile"]
    assert dockerfiles and all(r["summary"]["parsing_errors"] == 0 for r in dockerfiles)
    assert max(r["summary"]["passed"] for r in dockerfiles) > 20


def test_the_secrets_scan_finds_a_planted_key(scan: list[dict[str, Any]]) -> None:
    # Without this, a secrets framework that scanned nothing would pass the test above.
    planted = {check for check, file in failed(scan) if file == "canary/leaked.env"}
    assert "CKV_SECRET_2" in planted, planted  # checkov's "AWS Access Key"


# --- compose, checked here (checkov has no compose framework) --------------------------------
def compose_findings() -> set[tuple[str, str]]:
    findings: set[tuple[str, str]] = set()
    for name, svc in compose()["services"].items():
        image = str(svc.get("image", ""))
        tag = image.split("/")[-1].partition(":")[2]  # the last part: a registry has ports
        if "@sha256:" not in image and (not tag or tag == "latest"):
            findings.add(("image-tag", name))
        if svc.get("privileged"):
            findings.add(("privileged", name))
        if svc.get("cap_add"):
            findings.add(("capabilities", name))
        if any(svc.get(k) == "host" for k in ("network_mode", "pid", "ipc", "userns_mode")):
            findings.add(("host-namespace", name))
        sources = [str(v).split(":")[0] for v in svc.get("volumes", [])]
        if any("docker.sock" in s or s in ("/var/run", "/run") for s in sources):
            findings.add(("docker-socket", name))
        if svc.get("ports") and name != "traefik":  # the one entry point (TLS, auth)
            findings.add(("ports", name))
        one_shot = svc.get("restart", "no") == "no"
        if not one_shot and "healthcheck" not in svc:
            findings.add(("healthcheck", name))
    return findings


def test_compose_has_nothing_unexplained() -> None:
    entries = accepted()["compose"]
    assert all(e["reason"].strip() for e in entries)
    allowed = {(e["rule"], e["service"]) for e in entries}
    findings = compose_findings()
    unexplained = sorted(findings - allowed)
    assert not unexplained, f"new findings (fix, or accept with a reason): {unexplained}"
    stale = sorted(allowed - findings)
    assert not stale, f"accepted findings that are gone (delete their entries): {stale}"


def test_the_dev_overlay_publishes_only_on_loopback() -> None:
    for name, svc in load_yaml(COMPOSE_DEV).get("services", {}).items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on the network"
