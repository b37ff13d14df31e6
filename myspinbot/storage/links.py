"""Download links for stored artifacts, signed when they are handed out.

Job results and profiles keep each artifact's S3 key; a URL stored with them would stop
working once its signature expires (MYSPINBOT_PRESIGN_EXPIRY_S), so every read signs
afresh. Signing is local: no request goes to S3.
"""

from __future__ import annotations

from typing import Any

from myspinbot.storage.s3 import ArtifactStore


def signed_artifact(store: ArtifactStore, artifact: Any) -> Any:
    """`{name, key, ...}` with a fresh `url`; anything without a key as it is."""
    if isinstance(artifact, dict) and artifact.get("key"):
        return {**artifact, "url": store.presigned_url(str(artifact["key"]))}
    return artifact


def signed_result(store: ArtifactStore, result: Any) -> Any:
    """A job result with fresh links in its `artifacts` list and its `video`."""
    if not isinstance(result, dict):
        return result
    out = dict(result)
    if isinstance(out.get("artifacts"), list):
        out["artifacts"] = [signed_artifact(store, a) for a in out["artifacts"]]
    if "video" in out:
        out["video"] = signed_artifact(store, out["video"])
    return out
