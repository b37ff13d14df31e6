"""What the gateway talks to, built once at startup and kept on `app.state`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import httpx
import redis
import redis.asyncio as aioredis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from gateway.errors import ApiError
from gateway.hub import Hub
from gateway.links import Links
from myspinbot import keys
from myspinbot.accounts import Accounts
from myspinbot.db import JobHistory
from myspinbot.db.history import create_db_engine
from myspinbot.db.migrations import migrate
from myspinbot.db.uploads import Uploads
from myspinbot.deletion import Deletion
from myspinbot.metrics import PlatformCollector
from myspinbot.settings import Settings
from myspinbot.storage import ArtifactStore
from myspinbot.triton.client import host_port
from myspinbot.triton.repository import LORA_MODEL_PREFIX, MODELS, admin_headers

STATUS_RETRIES = 2
REDIS_POOL_SIZE = 200


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    status: httpx.AsyncClient
    store: ArtifactStore | None
    db: sa.Engine
    hub: Hub
    metrics_registry: CollectorRegistry
    uploads: Uploads  # who uploaded each portrait and narration
    links: Links
    accounts: Accounts
    deletion: Deletion | None = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        redis_url = settings.require_redis_url()
        # Under load, requests wait for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, decode_responses=True, max_connections=REDIS_POOL_SIZE, timeout=10
        )
        client = aioredis.Redis(connection_pool=pool)
        status_url = settings.status_url or "http://127.0.0.1:8081"
        registry = CollectorRegistry()
        streams = [(keys.job_stream(t), t) for t in keys.JOB_TYPES] + [(keys.EVENTS, "ws-relay")]
        registry.register(
            PlatformCollector(redis.Redis.from_url(redis_url, decode_responses=True), streams)
        )
        internal = settings.internal_token
        # The status function answers only the platform's internal credential.
        status_headers = (
            {"Authorization": f"Bearer {internal.get_secret_value()}"} if internal else {}
        )
        store = ArtifactStore.from_settings(settings) if settings.s3_endpoint else None
        links = Links(store, settings.link_ttl_s)
        # One SQL engine for the request path (SQLite's busy timeout and WAL mode, as the
        # history writer has), migrated once: the health check, uploads and accounts share it.
        sql = create_db_engine(settings.sqlalchemy_url)
        migrate(sql)
        return cls(
            settings=settings,
            redis=client,
            status=httpx.AsyncClient(base_url=status_url, timeout=10.0, headers=status_headers),
            store=store,
            db=sql,
            hub=Hub(client, settings.ws_queue_size, sign=links.message),
            metrics_registry=registry,
            uploads=Uploads(sql),
            links=links,
            accounts=Accounts(sql, outage_grace_s=settings.auth_outage_grace_s),
            deletion=_deletion(settings, redis_url, store),
        )

    async def close(self) -> None:
        await self.hub.stop()
        await self.status.aclose()
        await self.redis.aclose()
        self.db.dispose()  # uploads and accounts share it
        if self.deletion is not None:
            self.deletion.history.close()
            self.deletion.redis.close()

    # --- the status function ----------------------------------------------------------------
    async def query(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET from the status function; its 4xx pass through, its absence is a 503."""
        last: Exception | None = None
        for _ in range(STATUS_RETRIES):
            try:
                resp = await self.status.get(path, params=params)
            except httpx.TransportError as exc:
                last = exc
                continue
            if resp.status_code >= 500:
                last = RuntimeError(resp.text[:200])
                continue
            body = resp.json()
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, body.get("error", "request failed"))
            return body
        raise ApiError(503, f"The status function is not answering ({last}); try again shortly")

    # --- health ----------------------------------------------------------------------------------
    async def check_redis(self) -> None:
        await self.redis.ping()

    async def check_db(self) -> None:
        def ping() -> None:
            with self.db.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        await anyio.to_thread.run_sync(ping)

    async def check_s3(self) -> None:
        if self.store is None:
            raise RuntimeError("no S3 endpoint configured (MYSPINBOT_S3_ENDPOINT)")
        await anyio.to_thread.run_sync(self.store.ping)

    async def check_triton(self) -> dict[str, Any]:
        """Triton is ready and so is every model of the base repository."""
        assert self.settings.triton_url
        base = "http://" + host_port(self.settings.triton_url)
        ready = await self.status.get(base + "/v2/health/ready")
        if ready.status_code != 200:
            raise RuntimeError(f"Triton at {base} is not ready (HTTP {ready.status_code})")
        # The index is a model-repository request: Triton wants the admin key for it.
        answer = await self.status.post(
            base + "/v2/repository/index",
            json={},
            headers=admin_headers(self.settings.triton_admin_key),
        )
        if answer.status_code != 200:
            raise RuntimeError(
                f"Triton at {base} refused the model index (HTTP {answer.status_code}); "
                "is MYSPINBOT_TRITON_ADMIN_KEY the key it was started with?"
            )
        index = answer.json()
        states = {m["name"]: m.get("state", "UNKNOWN") for m in index}
        not_ready = [f"{m}: {states.get(m, 'missing')}" for m in MODELS if states.get(m) != "READY"]
        if not_ready:
            raise RuntimeError("Triton models not ready: " + ", ".join(not_ready))
        loras = [n for n, st in states.items() if n.startswith(LORA_MODEL_PREFIX) and st == "READY"]
        return {"models": {m: states[m] for m in MODELS}, "loraModels": len(loras)}

    async def functions(self) -> dict[str, dict[str, Any]]:
        """Registered functions and how many of their replicas are alive right now."""
        entries = await self.redis.hgetall(keys.FUNCTIONS)
        infos = [json.loads(v) for v in entries.values()]
        pipe = self.redis.pipeline(transaction=False)
        for info in infos:
            pipe.exists(keys.function_alive(info["function"], str(info["replica"])))
        alive = await pipe.execute()
        out: dict[str, dict[str, Any]] = {}
        for info, is_alive in zip(infos, alive, strict=True):
            fn = out.setdefault(
                info["function"],
                {
                    "replicas": 0,
                    "registered": 0,
                    "triggers": info.get("triggers", {}),
                    "capabilities": {},
                    "description": info.get("description"),
                    "metricsPorts": [],
                },
            )
            fn["registered"] += 1
            fn["replicas"] += int(bool(is_alive))
            fn["capabilities"].update(info.get("capabilities") or {})
            if info.get("metricsPort"):
                fn["metricsPorts"].append(info["metricsPort"])
        return out


def _deletion(settings: Settings, redis_url: str, store: ArtifactStore | None) -> Deletion | None:
    """Deletion is synchronous (run in worker threads): its own blocking Redis client and
    SQL engine, and the Triton a profile's LoRA model may be loaded in."""
    if store is None:
        return None
    return Deletion(
        redis.Redis.from_url(redis_url, decode_responses=True),
        JobHistory(settings.sqlalchemy_url),
        store,
        triton_url=settings.triton_url,
        triton_retry_s=min(settings.triton_retry_s, 5.0),
        triton_admin_key=settings.triton_admin_key,
    )


def now() -> float:
    return time.time()
