"""Short-lived download links, signed as the gateway answers.

Results and profiles are stored with artifact keys only (`myspinbot.jobs.models.Artifact`);
each answer that shows one gets a fresh link living MYSPINBOT_LINK_TTL_S (15 min by
default). Reading again gives a new link, so a short life costs the user nothing, and a
link that leaks (a log, a shared screenshot, a browser history) stops working soon.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from myspinbot.storage import ArtifactStore
from myspinbot.storage.links import signed_artifact, signed_result


class Links:
    def __init__(self, store: ArtifactStore | None, ttl_s: int) -> None:
        self._store = store
        self.ttl_s = ttl_s

    def result(self, result: Any) -> Any:
        """A job result with a fresh `url` on its `video` and each of its `artifacts`."""
        if self._store is None:
            return result
        return signed_result(self._store, result, self.ttl_s)

    def job(self, view: dict[str, Any]) -> dict[str, Any]:
        """A status view or job detail (whose events may carry the result too)."""
        out = {**view, "result": self.result(view.get("result"))}
        if isinstance(view.get("events"), list):
            out["events"] = [
                {**e, "result": self.result(e["result"])} if e.get("result") else e
                for e in view["events"]
            ]
        return out

    async def jobs(self, page: dict[str, Any]) -> dict[str, Any]:
        # botocore takes a few hundred microseconds per link: a page of jobs (up to 200,
        # each with several files) is signed off the event loop.
        def sign() -> dict[str, Any]:
            return {**page, "jobs": [self.job(j) for j in page.get("jobs", [])]}

        return await anyio.to_thread.run_sync(sign)

    def profile(self, view: dict[str, Any]) -> dict[str, Any]:
        if self._store is None or not isinstance(view.get("artifacts"), list):
            return view
        store = self._store
        return {
            **view,
            "artifacts": [signed_artifact(store, a, self.ttl_s) for a in view["artifacts"]],
        }

    async def profiles(self, body: dict[str, Any]) -> dict[str, Any]:
        def sign() -> dict[str, Any]:
            return {**body, "profiles": [self.profile(p) for p in body.get("profiles", [])]}

        return await anyio.to_thread.run_sync(sign)

    def message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A WebSocket message: a `done` event and a snapshot carry the result."""
        if not msg.get("result"):
            return msg
        return {**msg, "result": self.result(msg["result"])}
