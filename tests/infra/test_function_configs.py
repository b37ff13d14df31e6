"""Every functions/*/function.yaml is a Nuclio function config that Nuclio can
build and run: it parses into our runtime, uses only fields that exist in
Nuclio's, names only trigger kinds Nuclio's processor knows, and has a build.

The field names are the json tags of Nuclio's Go types in
github.com/nuclio/nuclio pkg/functionconfig/types.go (Config, Meta, Spec,
Trigger, Build, Directive; read at 1.16, where `numWorkers` replaced
`maxWorkers`), plus Kubernetes' core/v1 types that Spec embeds (EnvVar,
ResourceRequirements, PodSecurityContext). The trigger kinds are the names
registered with the processor's trigger registry
(`trigger.RegistrySingleton.Register(...)` in pkg/processor/trigger/*/factory.go):
the processor exits with "Failed to create triggers" on any other kind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
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
    disableDefaultHTTPTrigger disableSensitiveFieldsMasking devices autoScaleMetrics
    """
)
NUCLIO_TRIGGER = names(
    """
    class kind name disabled numWorkers maxWorkers url paths username password secret
    partitions annotations workerAvailabilityTimeoutMilliseconds workerAllocatorName
    explicitAckMode workerTerminationTimeout total_tasks max_task_allocation attributes batch
    waitExplicitAckDuringRebalanceTimeout
    """
)
NUCLIO_BUILD = names(
    """
    path functionSourceCode functionConfigPath tempDir registry baseImageRegistry image
    noBaseImagesPull noCache noCleanup baseImage commands directives scriptPaths addedPaths
    dependencies onbuildImage offline runtimeAttributes codeEntryType codeEntryAttributes
    timestamp buildTimeoutSeconds mode args flags builderServiceAccount
    """
)
NUCLIO_DIRECTIVE = {"kind", "value"}
NUCLIO_DIRECTIVE_STAGES = {"preCopy", "postCopy"}
K8S_POD_SECURITY_CONTEXT = names(
    """
    seLinuxOptions windowsOptions runAsUser runAsGroup runAsNonRoot supplementalGroups
    supplementalGroupsPolicy fsGroup sysctls fsGroupChangePolicy seccompProfile
    appArmorProfile seLinuxChangePolicy
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
    cron http kafka-cluster kafka kickstart kinesis mqtt iotCoreMqtt nats eventhub
    v3ioItemPoller pubsub rabbit-mq rabbitMq v3ioStream
    """
)
# Ours, which Nuclio lacks: declared as an annotation (runtime/config.py), in the shape
# of a Nuclio trigger, so the processor never sees it.
STREAM_ANNOTATION = "myspinbot.io/redis-stream."
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
    directives = (spec.get("build") or {}).get("directives") or {}
    bad += unknown(directives, NUCLIO_DIRECTIVE_STAGES, "spec.build.directives")
    for stage, items in directives.items():
        for i, d in enumerate(items):
            bad += unknown(d, NUCLIO_DIRECTIVE, f"spec.build.directives.{stage}[{i}]")
    bad += unknown(spec.get("securityContext") or {}, K8S_POD_SECURITY_CONTEXT, "securityContext")
    bad += unknown(spec.get("resources") or {}, K8S_RESOURCES, "spec.resources")
    for i, var in enumerate(spec.get("env") or []):
        bad += unknown(var, K8S_ENV_VAR, f"spec.env[{i}]")
    for name, trigger in (spec.get("triggers") or {}).items():
        bad += unknown(trigger, NUCLIO_TRIGGER, f"spec.triggers.{name}")
        if trigger["kind"] == "http":
            attrs = trigger.get("attributes") or {}
            bad += unknown(attrs, NUCLIO_HTTP_ATTRIBUTES, f"spec.triggers.{name}.attributes")
    for key, value in (raw["metadata"].get("annotations") or {}).items():
        if key.startswith(STREAM_ANNOTATION):
            bad += unknown(yaml.safe_load(value), NUCLIO_TRIGGER - {"kind"}, key)
    assert not bad, f"{fdir.name}: not in Nuclio's function config: {bad}"


@pytest.mark.parametrize("fdir", FUNCTION_DIRS, ids=lambda p: p.name)
def test_nuclio_processor_knows_every_trigger_kind(fdir: Path) -> None:
    spec = load_yaml(fdir / "function.yaml")["spec"]
    kinds = {name: t["kind"] for name, t in (spec.get("triggers") or {}).items()}
    assert set(kinds.values()) <= NUCLIO_TRIGGER_KINDS, f"{fdir.name}: {kinds}"


@pytest.mark.parametrize("fdir", FUNCTION_DIRS, ids=lambda p: p.name)
def test_nuclio_can_build_and_start_the_function(fdir: Path) -> None:
    """A build on the project's image (the handler imports myspinbot), as an
    unprivileged user, and a trigger for Nuclio to start a Python process for."""
    raw = load_yaml(fdir / "function.yaml")
    spec = raw["spec"]
    build = spec.get("build") or {}
    assert build.get("baseImage", "").startswith("myspinbot:") or any(
        "myspinbot" in c for c in build.get("commands", [])
    ), f"{fdir.name}: no build that installs the project"
    assert spec["securityContext"]["runAsNonRoot"] is True
    config = load_function_config(fdir)
    if config.stream_triggers:
        # Nuclio's default HTTP trigger is the process that runs the stream consumer.
        assert spec.get("disableDefaultHTTPTrigger") is False
        assert not spec.get("triggers"), "a stream function's only Nuclio trigger is the default"


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
    for name, trigger in (spec.get("triggers") or {}).items():
        assert trigger["kind"] in NUCLIO_TRIGGER_KINDS, f"{name}: kind"


@pytest.mark.parametrize("fdir", FUNCTION_DIRS, ids=lambda p: p.name)
def test_function_yaml_parses_into_the_runtime(fdir: Path) -> None:
    config = load_function_config(fdir)
    assert config.name == fdir.name
    for trigger in config.triggers_of("redis-stream").values():
        trigger.stream_attributes()  # our own kind: its attributes are complete
    jobs = {"train": "jobs.train", "generate": "jobs.generate", "ws-relay": "events"}
    if fdir.name in jobs:
        (stream,) = config.stream_triggers.values()
        assert stream.stream_attributes().stream == jobs[fdir.name]


def test_a_redis_stream_trigger_in_spec_triggers_is_refused(tmp_path: Path) -> None:
    """Nuclio would refuse to start it; the runtime says where it belongs instead."""
    (tmp_path / "function.yaml").write_text(
        "metadata: {name: x}\n"
        "spec:\n  handler: handler:handler\n  triggers:\n"
        "    jobs: {kind: redis-stream, attributes: {stream: s, consumerGroup: g}}\n"
    )
    with pytest.raises(
        runtime_config.FunctionConfigError, match=r"myspinbot\.io/redis-stream\.jobs"
    ):
        load_function_config(tmp_path)


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
        (runtime_config.Directive, NUCLIO_DIRECTIVE),
        (runtime_config.Resources, K8S_RESOURCES),
        (runtime_config.EnvVar, K8S_ENV_VAR),
        (runtime_config.HttpAttributes, NUCLIO_HTTP_ATTRIBUTES),
    ]
    for model, allowed in pairs:
        assert _aliases(model) <= allowed, f"{model.__name__}: {_aliases(model) - allowed}"
