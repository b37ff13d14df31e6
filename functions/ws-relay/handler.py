"""ws-relay: applies job events; batched (the handler receives a list of events).

On start it reconciles Redis and SQL (myspinbot.jobs.repair) before applying any
event, again whenever Redis comes back as a new process, and sweeps the inputs of
submits that never queued, periodically; with MYSPINBOT_RETENTION_DAYS set, it also
deletes finished jobs older than that (myspinbot.retention).
"""

from __future__ import annotations

import json
from typing import Any

import redis

from myspinbot.db import JobHistory
from myspinbot.deletion import Deletion
from myspinbot.jobs.relay import Relay
from myspinbot.jobs.repair import RedisRestartWatch, Sweeper, reconcile
from myspinbot.retention import DAY_S, RetentionSweeper
from myspinbot.runtime.hosting import join, stream_only
from myspinbot.settings import get_settings
from myspinbot.storage import ArtifactStore


def init_context(context: Any) -> None:
    settings = get_settings()
    client = redis.Redis.from_url(settings.require_redis_url(), decode_responses=True)
    history = JobHistory(settings.sqlalchemy_url)
    relay = Relay(client, history, settings)
    repaired = reconcile(client, history, relay.writer, settings.job_ttl_s)
    context.logger.info_with(
        "Reconciled Redis and SQL",
        synced=repaired.synced_to_sql,
        requeued=len(repaired.requeued),
        restored=len(repaired.restored),
        failed=len(repaired.failed),
    )
    context.user_data.relay = relay
    # Redis restarted (or lost its data) under a running relay: reconcile again.
    context.user_data.redis_watch = RedisRestartWatch(client, relay, settings.job_ttl_s)
    if settings.s3_endpoint:
        grace = settings.submit_orphan_grace_s
        store = ArtifactStore.from_settings(settings)
        context.user_data.sweeper = Sweeper(client, store, grace, every_s=min(grace, 60.0))
        if settings.retention_days:
            context.user_data.retention = RetentionSweeper(
                client,
                Deletion(client, history, store),
                settings.retention_days * DAY_S,
                every_s=settings.retention_sweep_s,
            )
    context.user_data.capabilities = {"events": {"available": True}}
    join(context, handler)  # under Nuclio: run the stream consumer and register, here


@stream_only
def handler(context: Any, event: Any) -> dict[str, Any]:
    batch = event if isinstance(event, list) else [event]
    outcomes = context.user_data.relay.apply([(e.id, _body(e)) for e in batch])
    return {"applied": sum(o.status == "applied" for o in outcomes), "received": len(batch)}


def _body(event: Any) -> Any:
    body = event.body
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return body  # not JSON: the relay dead-letters it
    return body
