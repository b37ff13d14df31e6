"""`function.yaml` in Nuclio's format, parsed strictly.

Only fields that exist in Nuclio's function config are accepted (unknown keys
are an error, so a typo does not silently do nothing).

`spec.triggers` holds only kinds Nuclio's processor knows (it refuses to start on
an unknown kind). Our Redis Streams trigger has no Nuclio kind, so it is declared
in an annotation, `myspinbot.io/redis-stream.<trigger name>`, whose value is the
trigger in Nuclio's own shape (numWorkers, attributes) as YAML. Nuclio passes
annotations through untouched (to the pods, and into the processor config the
function reads at start), so the one function.yaml configures the stream under
`myspinbot function run` and under Nuclio alike (see runtime/hosting.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EnvVar(_Strict):
    name: str
    value: str = ""


class Resources(_Strict):
    limits: dict[str, str | int] = Field(default_factory=dict)
    requests: dict[str, str | int] = Field(default_factory=dict)


# Headers the `redis-stream` trigger puts on every event it hands a handler.
ATTEMPT_HEADER = "X-Myspinbot-Attempt"  # 1 + retries + crashed deliveries
DELIVERIES_HEADER = "X-Myspinbot-Deliveries"  # deliveries of this stream entry
LEASE_HEADER = "X-Myspinbot-Lease"  # the delivery's lease (myspinbot.runtime.lease)


class RedisStreamAttributes(_Strict):
    stream: str = Field(description="Logical stream name, e.g. `jobs.train` or `events`.")
    consumer_group: str = Field(alias="consumerGroup")
    max_deliveries: int = Field(5, alias="maxDeliveries", ge=1)
    reclaim_idle_s: float | None = Field(None, alias="reclaimIdleSeconds", gt=0)
    backoff_base_s: float = Field(1.0, alias="backoffBaseSeconds", gt=0)
    backoff_max_s: float = Field(60.0, alias="backoffMaxSeconds", gt=0)
    batch_size: int = Field(1, alias="batchSize", ge=1)
    drain_timeout_s: float = Field(30.0, alias="drainTimeoutSeconds", ge=0)


class HttpAttributes(_Strict):
    port: int | None = None
    service_type: str | None = Field(None, alias="serviceType")
    ingresses: dict[str, Any] | None = None


STREAM_TRIGGER_ANNOTATION = "myspinbot.io/redis-stream."


class Trigger(_Strict):
    kind: Literal["http", "redis-stream"]
    num_workers: int = Field(1, alias="numWorkers", ge=1)
    max_workers: int | None = Field(None, alias="maxWorkers", ge=1)
    worker_availability_timeout_ms: int | None = Field(
        None, alias="workerAvailabilityTimeoutMilliseconds"
    )
    attributes: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, str] | None = None

    @property
    def workers(self) -> int:
        return max(self.num_workers, self.max_workers or 0)

    def stream_attributes(self) -> RedisStreamAttributes:
        return RedisStreamAttributes.model_validate(self.attributes)

    @model_validator(mode="after")
    def _check_attributes(self) -> Trigger:
        if self.kind == "redis-stream":
            self.stream_attributes()
        else:
            HttpAttributes.model_validate(self.attributes)
        return self


class Directive(_Strict):
    kind: str
    value: str


class Build(_Strict):
    commands: list[str] = Field(default_factory=list)
    base_image: str | None = Field(None, alias="baseImage")
    directives: dict[Literal["preCopy", "postCopy"], list[Directive]] = Field(default_factory=dict)


class Spec(_Strict):
    description: str | None = None
    runtime: str = "python:3.11"
    handler: str
    env: list[EnvVar] = Field(default_factory=list)
    min_replicas: int = Field(1, alias="minReplicas", ge=0)
    max_replicas: int = Field(1, alias="maxReplicas", ge=1)
    resources: Resources = Field(default_factory=Resources)
    triggers: dict[str, Trigger] = Field(default_factory=dict)
    build: Build | None = None
    readiness_timeout_seconds: int | None = Field(None, alias="readinessTimeoutSeconds")
    # Passed to Nuclio only: the pod's security context, and whether Nuclio adds its
    # default HTTP trigger (a stream function needs it: Nuclio starts a Python process
    # only for a trigger's workers, and that process runs the stream consumer).
    security_context: dict[str, Any] | None = Field(None, alias="securityContext")
    disable_default_http_trigger: bool | None = Field(None, alias="disableDefaultHTTPTrigger")

    @model_validator(mode="after")
    def _check(self) -> Spec:
        if ":" not in self.handler:
            raise ValueError("spec.handler must be `module:function`, e.g. `handler:handler`")
        if self.max_replicas < self.min_replicas:
            raise ValueError("spec.maxReplicas must be >= spec.minReplicas")
        for name, trigger in self.triggers.items():
            if trigger.kind == "redis-stream":
                raise ValueError(
                    f"spec.triggers.{name}: Nuclio has no `redis-stream` trigger kind and would "
                    f"refuse to start; declare it as the annotation "
                    f"`{STREAM_TRIGGER_ANNOTATION}{name}` instead"
                )
        return self


class Metadata(_Strict):
    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class FunctionConfig(_Strict):
    api_version: str | None = Field(None, alias="apiVersion")
    kind: str | None = None
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def handler_module(self) -> str:
        return self.spec.handler.split(":", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.spec.handler.split(":", 1)[1]

    @property
    def stream_triggers(self) -> dict[str, Trigger]:
        """The `redis-stream` triggers, from their annotations."""
        out: dict[str, Trigger] = {}
        for key, value in self.metadata.annotations.items():
            if key.startswith(STREAM_TRIGGER_ANNOTATION):
                name = key[len(STREAM_TRIGGER_ANNOTATION) :]
                try:
                    raw = yaml.safe_load(value)
                except yaml.YAMLError as exc:
                    raise ValueError(f"metadata.annotations.{key}: not valid YAML: {exc}") from None
                if not isinstance(raw, dict):
                    raise ValueError(f"metadata.annotations.{key}: must be a YAML mapping")
                out[name] = Trigger.model_validate({"kind": "redis-stream", **raw})
        return out

    @property
    def triggers(self) -> dict[str, Trigger]:
        """Every trigger this function runs: Nuclio's kinds and ours."""
        return {**self.spec.triggers, **self.stream_triggers}

    def triggers_of(self, kind: str) -> dict[str, Trigger]:
        return {n: t for n, t in self.triggers.items() if t.kind == kind}

    @model_validator(mode="after")
    def _check_stream_triggers(self) -> FunctionConfig:
        clash = set(self.spec.triggers) & set(self.stream_triggers)
        if clash:
            raise ValueError(f"trigger names used twice: {sorted(clash)}")
        return self


class FunctionConfigError(ValueError):
    pass


def load_function_config(function_dir: Path) -> FunctionConfig:
    path = Path(function_dir) / "function.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FunctionConfigError(f"{path}: no function.yaml in {function_dir}") from None
    except yaml.YAMLError as exc:
        raise FunctionConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return FunctionConfig.model_validate(raw)
    except ValidationError as exc:
        raise FunctionConfigError(f"{path}: {exc}") from None
