"""Test fixture, not product code: answers with what it received, in the
response shape the path asks for."""

from __future__ import annotations

from typing import Any


def init_context(context: Any) -> None:
    context.user_data.inits = getattr(context.user_data, "inits", 0) + 1


def handler(context: Any, event: Any) -> Any:
    if event.path == "/tuple":
        return 201, {"made": True}
    if event.path == "/bytes":
        return context.Response(
            body=b"\x00\x01\x02",
            content_type="application/octet-stream",
            status_code=200,
            headers={"X-Kind": "raw"},
        )
    if event.path == "/text":
        return "plain words"
    if event.path == "/raise":
        raise ValueError("boom")
    body = event.body
    return {
        "method": event.method,
        "path": event.path,
        "fields": event.fields,
        "header": event.get_header("x-test"),
        "contentType": event.content_type,
        "body": body if isinstance(body, dict) else body.decode(errors="replace"),
        "bodyType": type(body).__name__,
        "timestamp": [event.timestamp.isoformat(), event.timestamp.tzinfo is None],
        "url": event.url,
        "trigger": [event.trigger.kind, event.trigger.name],
        "worker": context.worker_id,
        "inits": context.user_data.inits,
    }
