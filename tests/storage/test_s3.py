"""ArtifactStore against a real S3 server: EmbeddedS3 (rclone serve s3) on tmp_path."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from myspinbot.netutil import free_port, port_open
from myspinbot.settings import Settings
from myspinbot.storage import ArtifactStore, EmbeddedS3
from myspinbot.storage.s3 import (
    ArtifactNotFoundError,
    StorageAuthError,
    StorageUnavailableError,
)

ACCESS = "test-access"
SECRET = "test-secret-key"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    server = EmbeddedS3(
        tmp_path_factory.mktemp("s3") / "root", access_key=ACCESS, secret_key=SECRET
    )
    server.start()
    yield server
    server.stop()


def _store(s3: EmbeddedS3, bucket: str, secret: str = SECRET) -> ArtifactStore:
    return ArtifactStore(s3.endpoint, bucket, ACCESS, secret)


@pytest.fixture
def store(s3: EmbeddedS3) -> ArtifactStore:
    # A bucket per test keeps tests independent while sharing one server.
    st = _store(s3, f"t-{uuid.uuid4().hex[:12]}")
    st.ensure_bucket()
    return st


def test_ensure_bucket_is_idempotent(s3: EmbeddedS3) -> None:
    st = _store(s3, "idem-bucket")
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        st.ping()
    st.ensure_bucket()
    st.ensure_bucket()
    _store(s3, "idem-bucket").ensure_bucket()
    st.ping()
    # rclone's bucket is a top-level directory of the served root.
    assert (s3.root / "idem-bucket").is_dir()


def test_roundtrip(store: ArtifactStore, tmp_path: Path) -> None:
    assert store.put_bytes("jobs/1/a.txt", b"alpha", content_type="text/plain") == 5
    assert store.put_bytes("jobs/1/sub/b.bin", b"\x00\x01\x02") == 3
    assert store.put_bytes("jobs/10/c.txt", b"other job") == 9
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"fake video")
    assert store.put_file("jobs/1/clip.mp4", src) == len(b"fake video")

    assert store.get_bytes("jobs/1/a.txt") == b"alpha"
    assert store.get_bytes("jobs/1/clip.mp4") == b"fake video"
    assert store.exists("jobs/1/a.txt")
    assert not store.exists("jobs/1/missing.txt")
    with pytest.raises(ArtifactNotFoundError, match=r"jobs/1/missing\.txt"):
        store.get_bytes("jobs/1/missing.txt")

    assert sorted(store.list_keys("jobs/1/")) == [
        "jobs/1/a.txt",
        "jobs/1/clip.mp4",
        "jobs/1/sub/b.bin",
    ]
    assert len(store.list_keys("jobs/")) == 4

    # Overwrite replaces, not appends.
    store.put_bytes("jobs/1/a.txt", b"beta")
    assert store.get_bytes("jobs/1/a.txt") == b"beta"

    assert store.delete_prefix("jobs/1/") == 3
    assert store.list_keys("jobs/1/") == []
    assert not store.exists("jobs/1/a.txt")
    assert store.list_keys("jobs/") == ["jobs/10/c.txt"]
    assert store.delete_prefix("jobs/1/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("")


def test_content_type_is_guessed_from_key(store: ArtifactStore) -> None:
    store.put_bytes("out/v.mp4", b"x")
    store.put_bytes("out/raw", b"x", content_type="application/x-custom")
    head = store.client.head_object(Bucket=store.bucket, Key="out/v.mp4")
    assert head["ContentType"] == "video/mp4"
    head = store.client.head_object(Bucket=store.bucket, Key="out/raw")
    assert head["ContentType"] == "application/x-custom"


def test_put_file_multipart(store: ArtifactStore, tmp_path: Path) -> None:
    # Above boto3's 8 MiB threshold, so upload_file goes multipart.
    data = os.urandom(9 * 1024 * 1024 + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    assert store.put_file("big/big.bin", src) == len(data)
    assert store.get_bytes("big/big.bin") == data


def test_many_keys_listed_and_deleted(store: ArtifactStore) -> None:
    for i in range(30):
        store.put_bytes(f"many/{i:03d}.txt", b"x")
    assert len(store.list_keys("many/")) == 30
    assert store.delete_prefix("many/") == 30
    assert store.list_keys("many/") == []


def test_presigned_url(store: ArtifactStore) -> None:
    store.put_bytes("share/hello.txt", b"hello world", content_type="text/plain")
    url = store.presigned_url("share/hello.txt", expires_s=60)
    assert url.startswith(store.endpoint + "/" + store.bucket + "/share/hello.txt?")

    resp = httpx.get(url)
    assert resp.status_code == 200
    assert resp.content == b"hello world"
    assert resp.headers["content-type"].startswith("text/plain")

    # Flip the last hex digit of the signature.
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    resp = httpx.get(tampered)
    assert resp.status_code == 403
    assert b"SignatureDoesNotMatch" in resp.content

    with pytest.raises(ValueError):
        store.presigned_url("share/hello.txt", expires_s=0)
    with pytest.raises(ValueError):
        store.presigned_url("share/hello.txt", expires_s=8 * 24 * 3600)


def test_presigned_url_default_expiry(s3: EmbeddedS3) -> None:
    st = ArtifactStore(s3.endpoint, "presign-default", ACCESS, SECRET, presign_expiry_s=123)
    assert "X-Amz-Expires=123" in st.presigned_url("k.txt")


def test_wrong_secret_is_a_clear_error(s3: EmbeddedS3, store: ArtifactStore) -> None:
    bad = _store(s3, store.bucket, secret="not-the-secret")
    with pytest.raises(StorageAuthError) as info:
        bad.ping()
    assert s3.endpoint in str(info.value)
    assert ACCESS in str(info.value)
    with pytest.raises(StorageAuthError):
        bad.get_bytes("anything")
    with pytest.raises(StorageAuthError):
        bad.put_bytes("anything", b"x")


def test_ping_dead_endpoint_names_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    st = ArtifactStore(endpoint, "bucket", ACCESS, SECRET)
    with pytest.raises(StorageUnavailableError) as info:
        st.ping()
    assert endpoint in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_from_settings() -> None:
    with pytest.raises(RuntimeError, match="MYSPINBOT_S3_ENDPOINT"):
        ArtifactStore.from_settings(Settings(s3_endpoint=None))
    st = ArtifactStore.from_settings(
        Settings(s3_endpoint="http://127.0.0.1:9/", s3_bucket="arts", link_ttl_s=60)
    )
    assert st.endpoint == "http://127.0.0.1:9"
    assert st.bucket == "arts"
    assert st.presign_expiry_s == 60
    # Links live 15 minutes unless configured otherwise.
    assert ArtifactStore.from_settings(Settings(s3_endpoint="http://x:9")).presign_expiry_s == 900


def test_embedded_restart_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with EmbeddedS3(root, access_key=ACCESS, secret_key=SECRET) as server:
        st = _store(server, "keep")
        st.ensure_bucket()
        st.put_bytes("a/b.txt", b"persisted")
        port = server.port
    assert not port_open("127.0.0.1", port)
    assert (root / "keep" / "a" / "b.txt").read_bytes() == b"persisted"
    # The log goes next to the root, never into a bucket.
    assert (tmp_path / "root-rclone.log").is_file()

    with EmbeddedS3(root, access_key=ACCESS, secret_key=SECRET) as server:
        assert _store(server, "keep").get_bytes("a/b.txt") == b"persisted"


def test_embedded_secret_not_on_command_line(s3: EmbeddedS3) -> None:
    cmdline = Path(f"/proc/{s3.pid}/cmdline")
    if not cmdline.exists():
        pytest.skip("needs /proc")
    assert SECRET.encode() not in cmdline.read_bytes()


def test_embedded_start_failure_reports_log(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = EmbeddedS3(tmp_path / "root", port=port, access_key=ACCESS, secret_key=SECRET)
        with pytest.raises(RuntimeError, match="address already in use"):
            server.start()
        assert not server.running


def test_embedded_rejects_short_access_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 3"):
        EmbeddedS3(tmp_path / "root", access_key="ak", secret_key=SECRET)


def test_links_are_signed_for_the_public_endpoint(s3: EmbeddedS3) -> None:
    # The platform talks to 127.0.0.1; people reach the same server as `localhost`.
    public = s3.endpoint.replace("127.0.0.1", "localhost")
    st = ArtifactStore(s3.endpoint, "public-links", ACCESS, SECRET, public_endpoint=public)
    st.ensure_bucket()
    st.put_bytes("a/b.txt", b"hello")
    url = st.presigned_url("a/b.txt")
    assert url.startswith(public + "/")
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == b"hello"


def test_stored_results_get_links_signed_when_read(store: ArtifactStore) -> None:
    """A job result kept for days still downloads: its links are signed on every read."""
    from myspinbot.storage.links import signed_result

    store.put_bytes("generations/j1/video.mp4", b"video bytes", "video/mp4")
    expired = "http://127.0.0.1:1/expired-signature"
    video = {"name": "video.mp4", "key": "generations/j1/video.mp4", "url": expired}
    result = {"artifacts": [video, {"name": "note", "url": expired}], "video": video, "n": 1}
    fresh = signed_result(store, result)
    assert fresh["n"] == 1 and fresh["artifacts"][1] == {"name": "note", "url": expired}
    for link in (fresh["video"], fresh["artifacts"][0]):
        resp = httpx.get(link["url"])
        assert resp.status_code == 200 and resp.content == b"video bytes"
    assert result["video"]["url"] == expired  # the stored result is left as it was
    assert signed_result(store, None) is None


def test_put_fileobj_streams_from_the_current_position(store: ArtifactStore) -> None:
    """An upload spooled to disk is stored from the file, not read whole first."""
    import tempfile

    with tempfile.SpooledTemporaryFile(max_size=1024) as spool:
        spool.write(b"skip" + os.urandom(3 * 1024 * 1024))
        spool.seek(4)
        assert store.put_fileobj("spooled/big.bin", spool, "application/octet-stream") == (
            3 * 1024 * 1024
        )
        spool.seek(4)
        assert store.get_bytes("spooled/big.bin") == spool.read()
