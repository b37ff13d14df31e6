"""Job history survives restarting the whole platform, on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import RunningPlatform


def test_history_survives_a_restart(db_url: str, tmp_path: Path) -> None:
    env = {} if db_url.startswith("sqlite") else {"MYSPINBOT_DATABASE_URL": db_url}
    data = tmp_path / "data"

    first = RunningPlatform(data, env=env).start()
    done = first.submit({"steps": 3, "echo": "kept"})
    failed = first.submit({"fail": "always"})
    first.wait_state(done, {"completed"})
    first.wait_state(failed, {"failed"})
    assert first.stop() == 0

    # Lose all live state: what is left must come from SQL.
    shutil.rmtree(data / "redis")
    second = RunningPlatform(data, env=env).start()
    try:
        listed = {j["jobId"]: j for j in second.get("/api/jobs").json()["jobs"]}
        assert listed[done]["state"] == "completed" and listed[failed]["state"] == "failed"
        assert second.status(done)["result"]["echo"] == "kept"
        assert "scripted failure" in second.status(failed)["error"]
        events = second.get(f"/api/jobs/{done}").json()["events"]
        assert next(e["state"] for e in events) == "queued"
        assert [e["state"] for e in events][-1] == "completed"
    finally:
        assert second.stop() == 0
