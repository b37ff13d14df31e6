"""Artifact storage: an S3 client bound to one bucket, and an embedded S3 server."""

from myspinbot.storage.embedded import EmbeddedS3
from myspinbot.storage.s3 import (
    ArtifactNotFoundError,
    ArtifactStore,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactStore",
    "EmbeddedS3",
    "StorageAuthError",
    "StorageError",
    "StorageUnavailableError",
]
