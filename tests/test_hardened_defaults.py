"""Issue 11, hardened defaults of `myspinbot up` (acceptance 6 and 7), on the real servers:
the data directory is private, the embedded Redis and S3 want the secrets `up` generated
(not the old well-known keys), and Triton listens on loopback only, whatever `--host`
says, with its model-repository API closed to requests without the admin key."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from myspinbot import datadir
from myspinbot.storage import ArtifactStore
from myspinbot.storage.s3 import StorageAuthError
from myspinbot.triton.repository import ADMIN_KEY_HEADER
from tests.support import FUNCTIONS, RunningPlatform

SECRETS = (
    datadir.REDIS_PASSWORD,
    datadir.S3_ACCESS_KEY,
    datadir.S3_SECRET_KEY,
    datadir.TRITON_ADMIN_KEY,
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`up` with Triton (the generate function uses it), told to listen on every address,
    on a data directory someone made readable by all."""
    data = tmp_path_factory.mktemp("hardened") / "data"
    data.mkdir()
    data.chmod(0o755)
    functions = [FUNCTIONS / n for n in ("status", "ws-relay", "generate")]
    p = RunningPlatform(data, functions=functions, env={"MYSPINBOT_HOST": "0.0.0.0"})
    yield p.start(timeout=600)
    assert p.stop() == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_is_0700_and_the_secrets_0600(platform: RunningPlatform) -> None:
    assert mode(platform.data_dir) == 0o700
    assert "tightened" in platform.log.read_text()  # it was 0755: said so
    folder = platform.data_dir / datadir.SECRETS_DIR
    assert mode(folder) == 0o700
    for name in SECRETS:
        assert mode(folder / name) == 0o600, name
        assert len(platform.secret(name)) >= 32, name


def test_redis_refuses_a_client_without_the_password(platform: RunningPlatform) -> None:
    url = urlsplit(platform.redis_url)
    assert url.hostname == "127.0.0.1" and url.password == platform.secret(datadir.REDIS_PASSWORD)
    stranger = redis.Redis(host=url.hostname, port=url.port)
    owner = redis.Redis.from_url(platform.redis_url)
    try:
        with pytest.raises(redis.AuthenticationError):
            stranger.ping()
        assert owner.ping()
    finally:
        stranger.close()
        owner.close()


def test_s3_refuses_the_old_fixed_keys_and_takes_the_generated_ones(
    platform: RunningPlatform,
) -> None:
    endpoint = platform.state()["urls"]["s3"]
    old = ArtifactStore(endpoint, "myspinbot", "myspinbot", "myspinbot-secret")
    with pytest.raises(StorageAuthError):
        old.ping()
    with pytest.raises(StorageAuthError):
        old.put_bytes("planted.txt", b"x")
    store = platform.store()  # the keys from <data_dir>/secrets/
    store.put_bytes("hardened/probe.txt", b"ok")
    assert store.get_bytes("hardened/probe.txt") == b"ok"
    store.delete_prefix("hardened/")


def test_no_secret_is_in_the_state_file_or_the_logs(platform: RunningPlatform) -> None:
    state = (platform.data_dir / "run" / "platform.json").read_text()
    assert ":***@127.0.0.1" in json.loads(state)["urls"]["redis"]
    texts = [state, platform.log.read_text()]
    texts += [p.read_text(errors="replace") for p in platform.data_dir.rglob("*.log")]
    for name in SECRETS:
        value = platform.secret(name)
        assert not any(value in text for text in texts), name


def _listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port` (from /proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_triton_listens_on_loopback_only_and_wants_the_admin_key(
    platform: RunningPlatform,
) -> None:
    url = platform.state()["urls"]["triton"]
    assert urlsplit(url).hostname == "127.0.0.1"  # though up was told 0.0.0.0
    # 127.0.0.1 in /proc/net/tcp's byte order; no 0.0.0.0 (00000000) listener.
    assert _listening_addresses(urlsplit(url).port or 0) == {"0100007F"}
    load = url + "/v2/repository/models/anything/load"
    assert httpx.post(load, json={}).status_code == 403
    assert httpx.post(load, json={}, headers={ADMIN_KEY_HEADER: "guess"}).status_code == 403
    key = platform.secret(datadir.TRITON_ADMIN_KEY)
    index = httpx.post(url + "/v2/repository/index", json={}, headers={ADMIN_KEY_HEADER: key})
    assert index.status_code == 200 and "unet" in [m["name"] for m in index.json()]
    # The gateway's health check lists Triton's models with the key: Triton counts as up.
    health = platform.get("/health")
    assert health.status_code == 200, health.text
