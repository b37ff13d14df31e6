"""infra/provision_secrets.sh: a local CA, a wildcard certificate that verifies
against it, and a basic-auth entry that verifies, all made offline by openssl."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.infra.support import DOMAIN, PROVISION_SECRETS, run, tool


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool("openssl")
    out = tmp_path_factory.mktemp("secrets")
    result = run(["bash", str(PROVISION_SECRETS), "--out", str(out)], env=_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DOMAIN", "BASIC_AUTH_PASSWORD"}}
    return {**env, **extra}


def openssl(*args: str) -> str:
    result = run([tool("openssl"), *args])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_it_writes_the_files_traefik_mounts(secrets: Path) -> None:
    names = {p.name for p in secrets.iterdir()}
    assert {"ca.crt", "ca.key", "wildcard.crt", "wildcard.key", "htpasswd"} <= names
    for key in ("ca.key", "wildcard.key", "htpasswd"):
        assert (secrets / key).stat().st_mode & 0o077 == 0, f"{key} is readable by others"


def test_the_wildcard_certificate_verifies_against_the_ca(secrets: Path) -> None:
    ca, cert = str(secrets / "ca.crt"), str(secrets / "wildcard.crt")
    for host in (f"api.{DOMAIN}", f"grafana.{DOMAIN}", DOMAIN):
        out = openssl(
            "verify", "-CAfile", ca, "-purpose", "sslserver", "-verify_hostname", host, cert
        )
        assert out.strip().endswith(": OK"), out
    # Not valid for other domains, nor for a second level under the wildcard.
    for host in ("api.example.com", f"a.b.{DOMAIN}"):
        bad = run([tool("openssl"), "verify", "-CAfile", ca, "-verify_hostname", host, cert])
        assert bad.returncode != 0, host
    text = openssl("x509", "-in", cert, "-noout", "-text")
    assert f"DNS:*.{DOMAIN}" in text and "TLS Web Server Authentication" in text
    assert "CA:TRUE" in openssl("x509", "-in", ca, "-noout", "-text")


def test_the_key_belongs_to_the_certificate(secrets: Path) -> None:
    from_cert = openssl("x509", "-in", str(secrets / "wildcard.crt"), "-noout", "-pubkey")
    from_key = openssl("pkey", "-in", str(secrets / "wildcard.key"), "-pubout")
    assert from_cert == from_key


def test_a_strict_tls_client_trusting_the_ca_connects(secrets: Path) -> None:
    """A real TLS handshake: the server presents the pair, the client checks
    the chain and the host name with X.509 strict checks (as browsers do)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(secrets / "wildcard.crt", secrets / "wildcard.key")
    client_ctx = ssl.create_default_context(cafile=str(secrets / "ca.crt"))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls:
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with client_ctx.wrap_socket(b, server_hostname=f"api.{DOMAIN}") as tls:
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    assert not errors, errors


def test_the_htpasswd_entry_verifies(secrets: Path) -> None:
    password = (secrets / "basic-auth-password").read_text().strip()
    assert len(password) >= 20
    user, hashed = (secrets / "htpasswd").read_text().strip().split(":", 1)
    assert user == "admin" and hashed.startswith("$apr1$"), "Traefik reads apr1 hashes"
    ok = run([tool("htpasswd"), "-vb", str(secrets / "htpasswd"), "admin", password])
    assert ok.returncode == 0, ok.stderr
    wrong = run([tool("htpasswd"), "-vb", str(secrets / "htpasswd"), "admin", password + "x"])
    assert wrong.returncode != 0


def test_a_rerun_keeps_the_ca_and_password(tmp_path: Path) -> None:
    argv = ["bash", str(PROVISION_SECRETS), "--out", str(tmp_path), "--domain", "example.test"]
    assert run(argv, env=_env()).returncode == 0
    ca, password = (
        (tmp_path / "ca.crt").read_bytes(),
        (tmp_path / "basic-auth-password").read_bytes(),
    )
    second = run(argv, env=_env())
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "ca.crt").read_bytes() == ca, "re-running must not replace a trusted CA"
    assert (tmp_path / "basic-auth-password").read_bytes() == password
    out = openssl(
        "verify",
        "-CAfile",
        str(tmp_path / "ca.crt"),
        "-verify_hostname",
        "s3.example.test",
        str(tmp_path / "wildcard.crt"),
    )
    assert out.strip().endswith(": OK")


def test_a_given_password_and_bad_input(tmp_path: Path) -> None:
    argv = ["bash", str(PROVISION_SECRETS), "--out", str(tmp_path), "--user", "ops"]
    assert run(argv, env=_env(BASIC_AUTH_PASSWORD="s3cret pass")).returncode == 0
    check = run([tool("htpasswd"), "-vb", str(tmp_path / "htpasswd"), "ops", "s3cret pass"])
    assert check.returncode == 0, check.stderr
    assert not (tmp_path / "basic-auth-password").exists()
    bad = run(["bash", str(PROVISION_SECRETS), "--out", str(tmp_path), "--domain", "x;rm"])
    assert bad.returncode == 2 and "not a valid domain" in bad.stderr


def test_it_generates_every_stack_password_privately(secrets: Path) -> None:
    assert secrets.stat().st_mode & 0o077 == 0, "the secrets directory is the owner's only"
    stack = secrets / "stack.env"
    assert stack.stat().st_mode & 0o077 == 0, "stack.env is readable by others"
    values = dict(
        line.split("=", 1) for line in stack.read_text().splitlines() if not line.startswith("#")
    )
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "REDIS_PASSWORD"} <= set(values)
    assert len(set(values.values())) == len(values), "each secret is drawn separately"
    # Redis gets its password in a config file the container's redis user can read.
    conf = (secrets / "redis.conf").read_text().splitlines()
    assert f"requirepass {values['REDIS_PASSWORD']}" in conf
    assert (secrets / "redis.conf").stat().st_mode & 0o777 == 0o644
    # The platform's own credentials (docs/security.md); Prometheus reads its copy of the
    # gateway's scrape token from a file.
    assert {"MYSPINBOT_INTERNAL_TOKEN", "MYSPINBOT_METRICS_TOKEN"} <= set(values)
    token = (secrets / "metrics.token").read_text().strip()
    assert token == values["MYSPINBOT_METRICS_TOKEN"]
    assert (secrets / "metrics.token").stat().st_mode & 0o777 == 0o644


def test_a_rerun_keeps_the_stack_passwords_and_regenerates_only_a_removed_one(
    tmp_path: Path,
) -> None:
    argv = ["bash", str(PROVISION_SECRETS), "--out", str(tmp_path)]
    assert run(argv, env=_env()).returncode == 0
    first = (tmp_path / "stack.env").read_text()
    assert run(argv, env=_env()).returncode == 0
    assert (tmp_path / "stack.env").read_text() == first, "a rerun must not rotate passwords"
    # Rotating one: delete its line and run again.
    kept = [line for line in first.splitlines() if not line.startswith("REDIS_PASSWORD=")]
    (tmp_path / "stack.env").write_text("\n".join(kept) + "\n")
    assert run(argv, env=_env()).returncode == 0
    after = (tmp_path / "stack.env").read_text().splitlines()
    assert set(kept) <= set(after)
    (new,) = [line for line in after if line.startswith("REDIS_PASSWORD=")]
    assert new not in first.splitlines()
    assert f"requirepass {new.split('=', 1)[1]}" in (tmp_path / "redis.conf").read_text()
