"""Every functions/*/function.yaml is a Nuclio function config: it parses into
our runtime and uses only fields that exist in Nuclio's.

The field names are the json tags of Nuclio's Go types in
github.com/nuclio/nuclio pkg/functionconfig/types.go (Config, Meta, Spec,
Trigger, Build; 1.13 and later, where `numWorkers` replaced `maxWorkers`), plus
Kubernetes' core/v1 types that Spec embeds (EnvVar, ResourceRequirements).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from myspinbot.runtime import config as runtime_config
from myspinbot.runtime.config import load_function_config
from tests.infra.support import FUNCTIONS, load_yaml


def names(text: str) -> set[str]:
    return set(text.split())


NUCLIO_CONFIG = {"apiVersion", "kind", "metadata", "spec", "status"}
NUCLIO_META = {"name", "namespace", "labels", "annotations", "resourceVersion"}
NUCLIO_SPEC = names(
    """
    description disable publish handler runtime env envFrom resources image imageHash replicas
    minReplicas maxReplicas targetCPU dataBindings triggers volumes version alias build
    runRegistry imagePullSecrets runtimeAttributes loggerSinks dealerURI platform
    readinessTimeoutSeconds avatar serviceType imagePullPolicy securityContext serviceAccount
    scaleToZero affinity nodeSelector nodeName tolerations priorityClassName preemptionPolicy
    preemptionMode deploymentStrategy hostIPC customScalingMetricSpecs
    waitReadinessTimeoutBeforeFailure eventTimeout sidecars initContainers
    disableDefaultHTTPTrigger
    """
)
NUCLIO_TRIGGER = names(
    """
    class kind name disabled numWorkers maxWorkers url paths username password secret
    partitions annotations workerAvailabilityTimeoutMilliseconds workerAllocatorName
    explicitAckMode workerTerminationTimeout total_tasks max_task_allocation attributes batch
    async mode
    """
)
NUCLIO_BUILD = names(
    """
    path functionSourceCode functionConfigPath tempDir registry baseImageRegistry image
    noBaseImagesPull noCache noCleanup baseImage commands directives scriptPaths addedPaths
    dependencies onbuildImage offline runtimeAttributes codeEntryType codeEntryAttributes
    timestamp buildTimeoutSeconds mode args
    """
)
K8S_ENV_VAR = {"name", "value", "valueFrom"}
K8S_RESOURCES = {"limits", "requests", "claims"}
# Attributes of Nuclio's http trigger (docs.nuclio.io reference/triggers/http).
NUCLIO_HTTP_ATTRIBUTES = names(
    """
    port serviceType ingresses readBufferSize maxRequestBodySize reduceMemoryUsage cors
    """
)
NUCLIO_TRIGGER_KINDS = names(
    """
    http cron kafka-cluster kinesis rabbit-mq nats mqtt v3ioStream pubsub eventhub
    """
)
# Ours: Nuclio has no Redis Streams trigger; docs/deploy.md says how it is run
# on Kubernetes. Its settings live in `attributes`, as Nuclio's stream triggers' do.
OWN_TRIGGER_KINDS = {"redis-stream"}
NUCLIO_PYTHON_RUNTIMES = {"python", "python:3.9", "python:3.10", "python:3.11", "python:3.12"}
K8S_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti|e[0-9]+)?$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

FUNCTION_DIRS = sorted(p.parent for p in FUNCTIONS.glob("*/function.yaml"))


def unknown(raw: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}.{k}" for k in raw if k not in allowed]


@pytest.mark.parametrize("fdir", FUNCTION_DIRS, ids=lambda p: p.name)
def test_function_yaml_uses_only_nuclio_fields(fdir: Path) -> None:
    raw = load_yaml(fdir / "function.yaml")
    spec = raw["spec"]
    bad = unknown(raw, NUCLIO_CONFIG, "")
    bad += unknown(raw["metadata"], NUCLIO_META, "metadata")
    bad += unknown(spec, NUCLIO_SPEC, "spec")
    bad += unknown(spec.get("build") or {}, NUCLIO_BUILD, "spec.build")
    bad += unknown(spec.get("resources") or {}, K8S_RESOURCES, "spec.resources")
    for i, var in enumerate(spec.get("env") or []):
        bad += unknown(var, K8S_ENV_VAR, f"spec.env[{i}]")
    for name, trigger in (spec.get("triggers") or {}).items():
        bad += unknown(trigger, NUCLIO_TRIGGER, f"spec.triggers.{name}")
        if trigger["kind"] == "http":
            attrs = trigger.get("attributes") or {}
            bad += unknown(attrs, NUCLIO_HTTP_ATTRIBUTES, f"spec.triggers.{name}.attributes")
    assert not bad, f"{fdir.name}: not in Nuclio's function config: {bad}"


@pytest.mark.parametrize("fdir", FUNCTION_DIRS, ids=lambda p: p.name)
def test_function_yaml_values_are_valid_for_nuclio(fdir: Path) -> None:
    raw = load_yaml(fdir / "function.yaml")
    spec = raw["spec"]
    assert raw["apiVersion"] == "nuclio.io/v1" and raw["kind"] == "NuclioFunction"
    assert raw["metadata"]["name"] == fdir.name and DNS_1123_LABEL.match(fdir.name)
    assert spec["runtime"] in NUCLIO_PYTHON_RUNTIMES
    module, _, entry = spec["handler"].partition(":")
    assert entry and (fdir / f"{module}.py").exists(), f"handler {spec['handler']}"
    for section in ("limits", "requests"):
        for resource, quantity in (spec.get("resources") or {}).get(section, {}).items():
            assert K8S_QUANTITY.match(str(quantity)), f"{section}.{resource}: {quantity}"
    assert 1 <= spec.get("minReplicas", 1) <= spec.get("maxReplicas", 1)
    for name, trigger in spec["triggers"].items():
        assert trigger["kind"] in NUCLIO_TRIGGER_KINDS | OWN_TRIGGER_KINDS, f"{name}: kind"


@pytest.mark.parametrize("fdir", FUNCTION_DIRS, ids=lambda p: p.name)
def test_function_yaml_parses_into_the_runtime(fdir: Path) -> None:
    config = load_function_config(fdir)
    assert config.name == fdir.name
    for trigger in config.triggers_of("redis-stream").values():
        trigger.stream_attributes()  # our own kind: its attributes are complete


def _aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_the_runtime_accepts_only_nuclio_fields() -> None:
    """The parser itself is strict (unknown keys are errors), so a function.yaml it
    accepts can only use these: each must be a Nuclio field too."""
    pairs: list[tuple[type[BaseModel], set[str]]] = [
        (runtime_config.FunctionConfig, NUCLIO_CONFIG),
        (runtime_config.Metadata, NUCLIO_META),
        (runtime_config.Spec, NUCLIO_SPEC),
        (runtime_config.Trigger, NUCLIO_TRIGGER),
        (runtime_config.Build, NUCLIO_BUILD),
        (runtime_config.Resources, K8S_RESOURCES),
        (runtime_config.EnvVar, K8S_ENV_VAR),
        (runtime_config.HttpAttributes, NUCLIO_HTTP_ATTRIBUTES),
    ]
    for model, allowed in pairs:
        assert _aliases(model) <= allowed, f"{model.__name__}: {_aliases(model) - allowed}"
