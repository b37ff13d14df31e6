"""The trusted-host and same-origin rules on their own (the live checks are in
test_auth.py)."""

from __future__ import annotations

from starlette.datastructures import Headers

from gateway.auth import TrustedHostMiddleware, same_origin
from myspinbot.settings import Settings


def allows(allowed: list[str], host: str) -> bool:
    return TrustedHostMiddleware(app=None, allowed=allowed).allows(host)  # type: ignore[arg-type]


def test_trusted_hosts_default_to_the_served_host_and_localhost() -> None:
    hosts = Settings(host="mybox.lan", allowed_hosts=None).trusted_hosts
    assert {"mybox.lan", "localhost", "127.0.0.1", "::1"} <= set(hosts)
    assert allows(hosts, "mybox.lan:8080") and allows(hosts, "localhost:8080")
    assert not allows(hosts, "evil.example:8080") and not allows(hosts, "evil.example")
    assert not allows(hosts, "mybox.lan.evil.example")
    # IP literals: rebinding needs a name, and 0.0.0.0 is reached by any local address.
    for ip in ("127.0.0.1:8080", "10.1.2.3", "[::1]:8080", "[fe80::1]"):
        assert allows(hosts, ip), ip
    configured = Settings(allowed_hosts="api.example.com, gateway").trusted_hosts
    assert configured == ["api.example.com", "gateway"]
    assert allows(configured, "API.example.com") and not allows(configured, "localhost")
    assert allows(["*"], "anything.example")


def test_same_origin_compares_host_and_port() -> None:
    def check(origin: str | None, host: str) -> bool:
        headers = {"host": host, **({"origin": origin} if origin else {})}
        return same_origin(Headers(headers))

    assert check(None, "127.0.0.1:8080")  # not a cross-origin browser request
    assert check("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert check("https://api.example.com", "api.example.com")  # TLS ended at the proxy
    assert check("https://api.example.com:443", "api.example.com")
    assert not check("http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not check("https://evil.example", "api.example.com")
    assert not check("null", "api.example.com")
    assert not check("http://api.example.com.evil.example", "api.example.com")
