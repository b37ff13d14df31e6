"""/health says which expected function has not come up, instead of a premature "ok"."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from fastapi.testclient import TestClient

from gateway.app import create_app
from myspinbot import keys
from myspinbot.accounts.service import Accounts
from myspinbot.db import JobHistory
from myspinbot.settings import Settings


def test_an_expected_function_that_never_registered_is_down(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    settings = Settings(
        redis_url=redis_url,
        database_url=db,
        expected_functions=["status", "train"],
        allowed_hosts="testserver",  # the Host header of TestClient's requests
    )
    JobHistory(db).close()  # the schema, as `up`'s storage step makes it
    accounts = Accounts.open(db)
    token = accounts.create_token(accounts.add_user("ada", "member"), "t").token
    accounts.close()
    # `status` has a live replica; `train` never started.
    r.hset(keys.FUNCTIONS, "status-0", json.dumps({"function": "status", "replica": 0}))
    r.set(keys.function_alive("status", "0"), "1")
    with TestClient(create_app(settings)) as client:
        resp = client.get("/health", headers={"Authorization": f"Bearer {token}"})
    body = resp.json()
    assert resp.status_code == 503 and "function:train" in body["failing"]
    assert body["components"]["functions"]["train"] == {
        "status": "down",
        "replicas": 0,
        "error": "not registered yet",
    }
    assert body["components"]["functions"]["status"]["status"] == "ok"
    assert "function:status" not in body["failing"]
