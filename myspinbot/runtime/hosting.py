"""A function replica that Nuclio started: join the platform from `init_context`.

Nuclio's processor runs a Python function as one wrapper process per worker of
each of its triggers, and knows no Redis Streams trigger (it refuses to start on
an unknown kind). So a function ends its `init_context` with `join(context, handler)`:

* under `myspinbot function run` (or Nuclio's test harness) it does nothing: our
  runtime already runs every trigger and registers the replica;
* in the process Nuclio started for worker "0" of its first trigger, it starts a
  `Replica` in the background: the function's `redis-stream` triggers (declared
  in the `myspinbot.io/redis-stream.<name>` annotation, read back from the
  processor config Nuclio mounts) run right here, in the process that runs the
  handler, and acknowledge an entry only after the handler finished with it
  (the same StreamTrigger as ours, so at-least-once holds); the replica registers
  with the platform (gateway /health, /api/capabilities) and refreshes that
  registration; Nuclio's termination signal drains it.

Nuclio's own context (worker "0") becomes the stream trigger's worker "0", so
once-per-replica work keyed on `is_first_worker` runs exactly once in a replica
under either runner. A stream function still gets Nuclio's default HTTP trigger
(Nuclio starts no Python process without a trigger); `stream_only` makes its
handler refuse what arrives there.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from myspinbot.runtime.config import FunctionConfig
from myspinbot.runtime.process import Replica
from myspinbot.settings import Settings

# Set by Nuclio's processor for the wrapper processes it starts (runtime.go,
# GetEnvFromConfiguration), and by its Kubernetes platform for the pod.
NUCLIO_FUNCTION_ENV = "NUCLIO_FUNCTION_NAME"
NUCLIO_INSTANCE_ENV = "NUCLIO_FUNCTION_INSTANCE"  # the pod's name
# Nuclio gives a worker 10 s (its default workerTerminationTimeout) to finish after
# its termination signal; what is still running then is handed back to the stream.
NUCLIO_DRAIN_S = 8.0

_lock = threading.Lock()
_hosted: Replica | None = None


def under_nuclio() -> bool:
    return bool(os.environ.get(NUCLIO_FUNCTION_ENV))


def is_first_worker(context: Any) -> bool:
    """One worker per replica, whichever runner: worker "0" (Nuclio and ours), or a
    context made outside any processor (Nuclio's test harness: no worker id)."""
    return context.worker_id in (None, 0, "0")


def processor_config(settings: Settings) -> FunctionConfig:
    """The deployed function, from the config Nuclio's processor was started with.

    Nuclio enriches the spec with many fields of its own; only what the replica
    needs is taken: the name, the handler, the description and the annotations
    (which hold the stream triggers).
    """
    raw = yaml.safe_load(Path(settings.nuclio_processor_config).read_text()) or {}
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    return FunctionConfig.model_validate(
        {
            "metadata": {
                "name": meta.get("name") or os.environ[NUCLIO_FUNCTION_ENV],
                "annotations": meta.get("annotations") or {},
            },
            "spec": {
                "handler": spec.get("handler") or "handler:handler",
                "description": spec.get("description"),
            },
        }
    )


def _nuclio_triggers(settings: Settings) -> dict[str, Any]:
    raw = yaml.safe_load(Path(settings.nuclio_processor_config).read_text()) or {}
    triggers = (raw.get("spec") or {}).get("triggers") or {}
    return {
        name: {"kind": t.get("kind"), "workers": t.get("numWorkers") or 1, "runner": "nuclio"}
        for name, t in triggers.items()
        if isinstance(t, dict)
    }


def join(context: Any, handler: Callable[[Any, Any], Any]) -> Replica | None:
    """Call last in `init_context`. Under Nuclio, in worker "0" of the trigger Nuclio
    runs, start this replica's stream triggers and registration; elsewhere a no-op.
    Returns the replica it started."""
    global _hosted
    if not under_nuclio() or context.trigger is None or context.trigger.kind == "redis-stream":
        return None  # our runtime, the test harness, or a stream worker this module made
    if not is_first_worker(context):
        return None  # Nuclio's other workers of this trigger: separate processes
    with _lock:
        if _hosted is not None:
            return None
        settings = Settings()
        config = processor_config(settings)
        replica = Replica(
            None,
            os.environ.get(NUCLIO_INSTANCE_ENV) or socket.gethostname(),
            settings,
            config=config,
            logger=context.logger,
        )
        replica.runner = "nuclio"
        module = sys.modules[handler.__module__]
        replica.start(
            module, handler, host_context=context, foreign_triggers=_nuclio_triggers(settings)
        )
        replica.keep_registered()
        context.platform.set_termination_callback(
            functools.partial(replica.shutdown, NUCLIO_DRAIN_S)
        )
        _hosted = replica
        return replica


def stream_only(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A stream function's handler, refusing events from Nuclio's default HTTP trigger
    (jobs reach it through its stream only, with retries and dead letters)."""

    @functools.wraps(handler)
    def wrapper(context: Any, event: Any) -> Any:
        trigger = getattr(event, "trigger", None)
        if getattr(trigger, "kind", None) == "http":
            return context.Response(
                body={"error": "this function takes its work from a Redis stream, not HTTP"},
                status_code=404,
                content_type="application/json",
                headers={},
            )
        return handler(context, event)

    return wrapper
