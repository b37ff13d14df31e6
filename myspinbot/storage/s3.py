"""Artifact storage on any S3-compatible server (the embedded rclone one, MinIO, AWS).

Keys are plain strings such as `jobs/<id>/output.mp4`; one `ArtifactStore` is
bound to one bucket. Every botocore failure that callers can act on is turned
into a `StorageError` subclass whose message names the endpoint, because the
raw botocore messages ("Forbidden", "Could not connect to the endpoint URL")
do not say which of several configured services is at fault.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from myspinbot.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# SigV4 caps presigned URLs at 7 days; AWS rejects longer ones at use time,
# so refuse them when they are made instead.
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600

# S3 deletes at most this many keys per DeleteObjects call.
_DELETE_BATCH = 1000

_AUTH_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})


class StorageError(RuntimeError):
    """An S3 operation failed; the message names the endpoint and bucket."""


class StorageUnavailableError(StorageError):
    """The S3 endpoint could not be reached (refused, timed out, DNS)."""


class StorageAuthError(StorageError):
    """The S3 endpoint rejected our credentials or signature."""


class ArtifactNotFoundError(StorageError):
    """The requested key (or the bucket) does not exist."""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _guess_content_type(key: str) -> str | None:
    # Presigned URLs are opened straight in browsers, which need e.g. video/mp4
    # to play inline instead of downloading; the key's extension is all we have.
    ctype, _ = mimetypes.guess_type(key)
    return ctype


class ArtifactStore:
    """Bucket-scoped object storage over boto3."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        presign_expiry_s: int = 900,
        public_endpoint: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        # Where people's browsers reach the same S3 (e.g. https://s3.example.org behind a
        # proxy, while the platform talks to http://minio:9000). A signature covers the
        # host, so links must be signed for the public address, not rewritten afterwards.
        self.public_endpoint = (public_endpoint or endpoint).rstrip("/")
        self.bucket = bucket
        self.region = region
        self.access_key = access_key
        self.presign_expiry_s = presign_expiry_s
        config = Config(
            signature_version="s3v4",
            # Local servers have no wildcard DNS for <bucket>.127.0.0.1.
            s3={"addressing_style": "path"},
            # Fail fast when S3 is down: the gateway answers a request with a
            # clear error instead of hanging behind botocore's default 60s x 5.
            connect_timeout=2,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        # A private session: boto3's module-level default session is shared
        # state that is not safe to build clients from on several threads.
        session = boto3.session.Session()

        def client(url: str) -> S3Client:
            return session.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
                config=config,
            )

        self._client = client(self.endpoint)
        self._signer = (
            self._client if self.public_endpoint == self.endpoint else client(self.public_endpoint)
        )

    @classmethod
    def from_settings(cls, s: Settings) -> ArtifactStore:
        if not s.s3_endpoint:
            raise RuntimeError(
                "MYSPINBOT_S3_ENDPOINT is not set: start the platform with `myspinbot up` "
                "(which runs an embedded S3) or point it at an S3-compatible server"
            )
        return cls(
            endpoint=s.s3_endpoint,
            bucket=s.s3_bucket,
            access_key=s.s3_access_key,
            secret_key=s.s3_secret_key,
            region=s.s3_region,
            presign_expiry_s=s.link_ttl_s,
            public_endpoint=s.s3_public_endpoint,
        )

    def __repr__(self) -> str:
        return f"ArtifactStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    @property
    def client(self) -> S3Client:
        """The underlying boto3 client, for operations this class does not wrap."""
        return self._client

    def _convert(self, op: str, exc: Exception, key: str | None = None) -> StorageError:
        """The StorageError to raise for a botocore failure of `op`."""
        where = f"S3 {self.endpoint} bucket {self.bucket!r}"
        if key is not None:
            where += f" key {key!r}"
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code in _AUTH_CODES:
                return StorageAuthError(
                    f"{op} failed: {where} rejected access key {self.access_key!r} "
                    f"({code}); check MYSPINBOT_S3_ACCESS_KEY / MYSPINBOT_S3_SECRET_KEY"
                )
            if code in _NO_BUCKET_CODES:
                return ArtifactNotFoundError(
                    f"{op} failed: bucket {self.bucket!r} does not exist at S3 {self.endpoint}"
                )
            if code in _NOT_FOUND_CODES:
                return ArtifactNotFoundError(f"{op} failed: not found at {where}")
            return StorageError(f"{op} failed at {where}: {code or exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            # Refused connections, DNS failures, connect timeouts (ConnectionError)
            # and read timeouts or dropped connections (HTTPClientError).
            return StorageUnavailableError(
                f"{op} failed: S3 endpoint {self.endpoint} is unreachable ({exc})"
            )
        return StorageError(f"{op} failed at {where}: {exc}")

    @contextmanager
    def _translate(self, op: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._convert(op, exc, key) from exc

    # --- bucket ---------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the endpoint answers, accepts our credentials and has the bucket."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # HEAD responses have no body, so a missing bucket is a bare "404"
            # that _convert would report as a missing key.
            if _error_code(exc) in _NOT_FOUND_CODES | _NO_BUCKET_CODES:
                raise ArtifactNotFoundError(
                    f"ping failed: bucket {self.bucket!r} does not exist at S3 "
                    f"{self.endpoint}; create it with ensure_bucket()"
                ) from exc
            raise self._convert("ping", exc) from exc
        except BotoCoreError as exc:
            raise self._convert("ping", exc) from exc

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; safe to call from several processes."""
        try:
            self.ping()
            return
        except ArtifactNotFoundError:
            pass
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        # us-east-1 is the one region where AWS rejects an explicit LocationConstraint.
        if self.region and self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            # Another process won the race between our HEAD and CREATE.
            if _error_code(exc) in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return
            raise self._convert("ensure_bucket", exc) from exc
        except BotoCoreError as exc:
            raise self._convert("ensure_bucket", exc) from exc

    # --- objects --------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int:
        """Store `data` at `key` (overwriting) and return its size in bytes."""
        ctype = content_type or _guess_content_type(key)
        extra: dict[str, Any] = {"ContentType": ctype} if ctype else {}
        with self._translate("put", key):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        return len(data)

    def put_fileobj(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> int:
        """Store what `fileobj` holds from its current position to its end, read in chunks
        (an upload spooled to disk is never held whole in memory), and return its size."""
        start = fileobj.tell()
        size = fileobj.seek(0, os.SEEK_END) - start
        fileobj.seek(start)
        ctype = content_type or _guess_content_type(key)
        extra: dict[str, Any] = {"ContentType": ctype} if ctype else {}
        with self._translate("put", key):
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=fileobj, ContentLength=size, **extra
            )
        return size

    def put_file(
        self, key: str, path: str | os.PathLike[str], content_type: str | None = None
    ) -> int:
        """Upload a local file to `key` and return its size in bytes.

        Goes through boto3's transfer manager, so big files use multipart
        uploads instead of one request that must fit in the read timeout.
        """
        path = Path(path)
        size = path.stat().st_size
        ctype = content_type or _guess_content_type(key) or _guess_content_type(path.name)
        extra = {"ContentType": ctype} if ctype else None
        with self._translate("put_file", key):
            self._client.upload_file(str(path), self.bucket, key, ExtraArgs=extra)
        return size

    def get_bytes(self, key: str) -> bytes:
        """The whole object at `key`; raises ArtifactNotFoundError if it is missing."""
        with self._translate("get", key):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        return data

    def exists(self, key: str) -> bool:
        try:
            with self._translate("exists", key):
                self._client.head_object(Bucket=self.bucket, Key=key)
        except ArtifactNotFoundError:
            return False
        return True

    def list_keys(self, prefix: str) -> list[str]:
        """All keys starting with `prefix` (a plain string prefix, not a folder)."""
        keys: list[str] = []
        with self._translate("list", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []) if "Key" in obj)
        return keys

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with `prefix`; returns how many were deleted.

        The prefix is a string prefix: pass `jobs/12/`, not `jobs/12`, or
        `jobs/123/...` goes too. An empty prefix is refused because it would
        empty the whole bucket, which is never what a caller with a blank
        job id meant.
        """
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        return self.delete_keys(self.list_keys(prefix))

    def delete_keys(self, keys: Sequence[str]) -> int:
        """Delete exactly these keys (a missing one is no error); returns len(keys)."""
        deleted = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = list(keys[start : start + _DELETE_BATCH])
            with self._translate("delete", batch[0]):
                resp = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                raise StorageError(
                    f"delete failed at S3 {self.endpoint} bucket {self.bucket!r}: "
                    f"{len(errors)} of {len(batch)} keys not deleted, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}"
                )
            deleted += len(batch)
        return deleted

    def list_modified(self, prefix: str) -> list[tuple[str, float]]:
        """(key, last-modified unix time) of every key starting with `prefix`."""
        out: list[tuple[str, float]] = []
        with self._translate("list", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend(
                    (obj["Key"], obj["LastModified"].timestamp())
                    for obj in page.get("Contents", [])
                    if "Key" in obj and "LastModified" in obj
                )
        return out

    def presigned_url(self, key: str, expires_s: int | None = None) -> str:
        """A URL anyone can GET `key` with, without credentials, until it expires.

        Signed locally: this neither contacts S3 nor checks that `key` exists.
        The URL is signed for `public_endpoint` (the S3 address people can
        reach; by default the one the platform uses).
        """
        expiry = self.presign_expiry_s if expires_s is None else expires_s
        if not 0 < expiry <= MAX_PRESIGN_EXPIRY_S:
            raise ValueError(
                f"presigned URL expiry must be 1..{MAX_PRESIGN_EXPIRY_S}s, got {expiry}"
            )
        with self._translate("presign", key):
            url = self._signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expiry,
            )
        return url
