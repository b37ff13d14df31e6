"""ws-relay: applies job events; batched (the handler receives a list of events)."""

from __future__ import annotations

import json
from typing import Any

import redis

from myspinbot.db import JobHistory
from myspinbot.jobs.relay import Relay
from myspinbot.runtime.hosting import join, stream_only
from myspinbot.settings import get_settings


def init_context(context: Any) -> None:
    settings = get_settings()
    client = redis.Redis.from_url(settings.require_redis_url(), decode_responses=True)
    context.user_data.relay = Relay(client, JobHistory(settings.sqlalchemy_url), settings)
    context.user_data.capabilities = {"events": {"available": True}}
    join(context, handler)  # under Nuclio: run the stream consumer and register, here


@stream_only
def handler(context: Any, event: Any) -> dict[str, Any]:
    batch = event if isinstance(event, list) else [event]
    outcomes = context.user_data.relay.apply([(e.id, _body(e)) for e in batch])
    return {"applied": sum(o.status == "applied" for o in outcomes), "received": len(batch)}


def _body(event: Any) -> dict[str, Any]:
    body = event.body
    if isinstance(body, bytes | str):
        body = json.loads(body)
    return dict(body)
