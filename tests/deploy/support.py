"""Rendering deploy/kubernetes for tests: `kubectl kustomize`, once per overlay."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "gpu", "chatbot")
# The Kubernetes version the manifests are validated against (kubernetes-validate's
# schemas, strict: unknown fields are errors).
KUBERNETES_VERSION = "1.32.0"
# Test tools scripts/test installs outside the project's virtualenv.
TOOLS = ROOT / ".venv" / "tools"
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"
CRD_SCHEMAS = TOOLS / "crd-schemas" / "node_modules"


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is needed to render deploy/kubernetes (kubectl kustomize)"
    return path


@functools.cache
def rendered_text(overlay: str) -> str:
    out = subprocess.run(
        [
            kubectl(),
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(KUBERNETES / "overlays" / overlay),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return out.stdout


def rendered(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered_text(overlay)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in the rendered manifests")
