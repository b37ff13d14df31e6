"""Download links for stored artifacts, signed when they are handed out.

Job results and profiles keep each artifact's S3 key, never a URL: a stored link would
live in Redis, SQL and their backups for as long as its signature does, and could not be
taken back. The gateway signs afresh at every read, with a short life
(MYSPINBOT_LINK_TTL_S). Signing is local: no request goes to S3.
"""

from __future__ import annotations

from typing import Any

from myspinbot.storage.s3 import ArtifactStore


def signed_artifact(store: ArtifactStore, artifact: Any, expires_s: int | None = None) -> Any:
    """`{name, key, ...}` with a fresh `url`; anything without a key as it is."""
    if isinstance(artifact, dict) and artifact.get("key"):
        return {**artifact, "url": store.presigned_url(str(artifact["key"]), expires_s)}
    return artifact


def signed_result(store: ArtifactStore, result: Any, expires_s: int | None = None) -> Any:
    """A job result with fresh links in its `artifacts` list and its `video`."""
    if not isinstance(result, dict):
        return result
    out = dict(result)
    if isinstance(out.get("artifacts"), list):
        out["artifacts"] = [signed_artifact(store, a, expires_s) for a in out["artifacts"]]
    if "video" in out:
        out["video"] = signed_artifact(store, out["video"], expires_s)
    return out
