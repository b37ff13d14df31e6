"""EmbeddedRedis runs a real redis-server that persists across restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from myspinbot.netutil import free_port, port_open
from myspinbot.platform.servers import SupervisedServer
from myspinbot.redisserver import EmbeddedRedis
from tests.support import pid_alive, wait_for


def test_set_get_and_url(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        assert server.url.startswith("redis://127.0.0.1:")
        assert server.url.endswith("/0")
        client = redis.Redis.from_url(server.url)
        try:
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
        finally:
            client.close()
    assert (tmp_path / "redis" / "redis.log").is_file()


def test_data_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    server = EmbeddedRedis(data_dir)
    url = server.start()
    client = redis.Redis.from_url(url)
    client.set("job:1", "done")
    client.xadd("stream", {"k": "v"})
    client.close()
    server.stop()
    assert any(p.name.startswith("appendonly.aof") for p in data_dir.iterdir())

    # A fresh object on the same dir (new free port) must replay the AOF.
    again = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(again.start())
    try:
        assert client.get("job:1") == b"done"
        assert client.xlen("stream") == 1
    finally:
        client.close()
        again.stop()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    pid = server.pid
    port = server.port
    assert pid is not None and pid_alive(pid)
    server.stop()
    assert not pid_alive(pid)
    assert not port_open("127.0.0.1", port)
    assert not server.running
    server.stop()  # idempotent


def test_start_failure_reports_log(tmp_path: Path) -> None:
    # A port that is already taken makes redis-server exit during startup.
    import socket

    with socket.socket() as sock:
        port = free_port()
        sock.bind(("127.0.0.1", port))
        sock.listen()
        server = EmbeddedRedis(tmp_path / "redis", port=port)
        with pytest.raises(RuntimeError, match=r"redis-server exited .*\n.*"):
            server.start()
        assert not server.running


def test_port_held_by_another_redis_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "first", appendonly=False) as first:
        second = EmbeddedRedis(tmp_path / "second", port=first.port)
        with pytest.raises(RuntimeError, match="Address already in use"):
            second.start()
        assert first.running


def test_every_write_is_fsynced_before_the_reply_by_default(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            client.close()
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedRedis(tmp_path / "other", appendfsync="no")


def test_a_killed_server_is_brought_back_on_its_port_with_its_data(tmp_path: Path) -> None:
    """What `myspinbot up` does for its embedded servers (platform/servers.py): a SIGKILLed
    redis-server comes back on the same port, and every acknowledged write is still there."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    said: list[str] = []
    supervised = SupervisedServer("redis", server, url, said.append)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        for i in range(200):
            client.xadd("jobs", {"n": str(i)})
        victim = server.pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: server.exit_code is not None, what="redis-server to die")
        assert not supervised.poll()  # noticed; the restart runs in a thread
        wait_for(supervised.poll, timeout=30, what="the restart")
        assert server.pid != victim and server.url == url and supervised.restarts == 1
        assert client.xlen("jobs") == 200  # the same client reconnects to the same port
        assert any("exited with -9" in s for s in said) and "serving again" in said[-1]
    finally:
        client.close()
        supervised.stop()
    assert not pid_alive(victim)


def test_with_a_password_it_refuses_clients_without_it(tmp_path: Path) -> None:
    """Issue 11 acceptance 7: `myspinbot up` starts Redis with a password; a client that
    does not send it (or sends another) gets no data, the URL it was given works."""
    password = "a-long-random-test-password_123"
    with EmbeddedRedis(tmp_path / "redis", password=password) as server:
        assert server.url == f"redis://:{password}@127.0.0.1:{server.port}/0"
        owner = redis.Redis.from_url(server.url)
        stranger = redis.Redis(host="127.0.0.1", port=server.port)
        guesser = redis.Redis(host="127.0.0.1", port=server.port, password="myspinbot")
        try:
            owner.set("face", "private")
            with pytest.raises(redis.AuthenticationError):
                stranger.get("face")
            with pytest.raises(redis.AuthenticationError):
                guesser.get("face")
            assert owner.get("face") == b"private"
        finally:
            for c in (owner, stranger, guesser):
                c.close()
        # Not on the command line, where `ps` shows it to every account.
        cmdline = Path(f"/proc/{server.pid}/cmdline")
        if cmdline.exists():
            assert password.encode() not in cmdline.read_bytes()
        conf = server.auth_conf
        assert conf.stat().st_mode & 0o777 == 0o600


def test_a_password_that_cannot_go_into_its_config_is_refused(tmp_path: Path) -> None:
    for bad in ("", "two words", 'quo"te'):
        with pytest.raises(ValueError, match="password"):
            EmbeddedRedis(tmp_path / "redis", password=bad)
