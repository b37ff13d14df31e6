"""status: job status, history and profiles over HTTP.

Routes (GET): /status/{id}, /jobs?limit&offset&type&state&owner, /jobs/{id},
/profiles?owner, /profiles/{id}, /healthz. Who may see what is the gateway's decision
(gateway/ownership.py); here `owner` only filters, and every view names its owner.

Answers carry artifact keys, not links: the gateway signs short-lived links as it
answers (gateway/links.py), so no signed URL passes through or is logged here.

Only the platform may ask: every route but /healthz (for liveness probes; it says only
"ok") needs `Authorization: Bearer <MYSPINBOT_INTERNAL_TOKEN>`, which the gateway sends
after checking who its caller is. Without a configured token nothing is answered.
"""

from __future__ import annotations

import hmac
from typing import Any

import redis

from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.jobs.queries import JobQueries
from myspinbot.runtime.hosting import join
from myspinbot.settings import get_settings

MAX_PAGE = 200


def init_context(context: Any) -> None:
    settings = get_settings()
    client = redis.Redis.from_url(settings.require_redis_url(), decode_responses=True)
    history = JobHistory(settings.sqlalchemy_url)
    context.user_data.history = history
    context.user_data.queries = JobQueries(client, history)
    internal = settings.internal_token
    context.user_data.internal_token = internal.get_secret_value() if internal else None
    context.user_data.capabilities = {"status": {"available": True}}
    join(context, handler)  # under Nuclio: register this replica with the platform


def _json(context: Any, status: int, body: Any) -> Any:
    return context.Response(
        body=body, status_code=status, content_type="application/json", headers={}
    )


def _int(fields: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(max(int(fields.get(name, default)), lo), hi)
    except (TypeError, ValueError):
        return default


def handler(context: Any, event: Any) -> Any:
    if (event.method or "GET").upper() != "GET":
        return _json(context, 405, {"error": "only GET is supported"})
    parts = [p for p in (event.path or "/").split("/") if p]
    q = context.user_data.queries
    if parts == ["healthz"]:
        context.user_data.history.ping()
        return _json(context, 200, {"status": "ok"})
    if not _internal(context, event):
        return _json(
            context,
            401,
            {
                "error": "Only the platform may call this function: send the internal token "
                "(MYSPINBOT_INTERNAL_TOKEN) as `Authorization: Bearer ...`."
            },
        )
    if len(parts) == 2 and parts[0] == "status":
        job = q.get(parts[1])
        if job is None:
            return _json(context, 404, {"error": f"No job with id {parts[1]!r}"})
        return _json(context, 200, job.status_view())
    if parts == ["jobs"]:
        fields = event.fields or {}
        limit = _int(fields, "limit", 20, 1, MAX_PAGE)
        offset = _int(fields, "offset", 0, 0, 10**9)
        jobs, total = q.page(
            limit,
            offset,
            fields.get("type") or None,
            fields.get("state") or None,
            fields.get("owner") or None,
        )
        return _json(
            context,
            200,
            {
                "jobs": [j.status_view() for j in jobs],
                "total": total,
                "limit": limit,
                "offset": offset,
            },
        )
    if len(parts) == 2 and parts[0] == "jobs":
        detail = q.detail(parts[1])
        if detail is None:
            return _json(context, 404, {"error": f"No job with id {parts[1]!r}"})
        return _json(context, 200, detail)
    if parts == ["profiles"]:
        owner = (event.fields or {}).get("owner") or None
        profiles = context.user_data.history.list_profiles(owner)
        return _json(context, 200, {"profiles": [_profile_view(context, p) for p in profiles]})
    if len(parts) == 2 and parts[0] == "profiles":
        profile = context.user_data.history.get_profile(parts[1])
        if profile is None:
            return _json(context, 404, {"error": f"No profile with id {parts[1]!r}"})
        return _json(context, 200, _profile_view(context, profile))
    return _json(context, 404, {"error": f"Unknown path {event.path!r}"})


def _internal(context: Any, event: Any) -> bool:
    expected = context.user_data.internal_token
    headers = event.headers or {}
    header = str(headers.get("Authorization") or headers.get("authorization") or "")
    scheme, _, value = header.partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(value.strip().encode(), expected.encode())
    )


def _profile_view(context: Any, profile: ProfileRecord) -> dict[str, Any]:
    view: dict[str, Any] = profile.model_dump(mode="json")
    return view
