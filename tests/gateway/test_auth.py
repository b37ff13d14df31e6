"""Who may ask (issue 11): every /api route and /ws needs a user, /health says little to a
stranger, /metrics needs its own token, the status function only answers the platform,
cookie requests need the CSRF header and their own Origin, and foreign host names and
Origins are refused. All against the real platform (`myspinbot up`)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support import RunningPlatform

SIGN_IN = "Sign in"


def api_operations(platform: RunningPlatform) -> list[tuple[str, str]]:
    """(method, path with placeholders filled) of every /api operation in the OpenAPI doc."""
    spec = httpx.get(platform.url + "/openapi.json", timeout=30).json()
    ops = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method in methods:
            ops.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return ops


def test_every_api_operation_needs_a_credential(platform: RunningPlatform) -> None:
    ops = api_operations(platform)
    assert ("POST", "/api/generate") in ops and ("GET", "/api/me") in ops  # the doc is whole
    for method, path in ops:
        if (method, path) == ("POST", "/api/session"):  # signing in is how one gets one
            continue
        for headers in ({}, {"Authorization": "Bearer msb_" + "A" * 43}, {"Authorization": "x"}):
            resp = httpx.request(method, platform.url + path, headers=headers, timeout=30)
            assert resp.status_code == 401, (method, path, headers, resp.text)
            assert SIGN_IN in resp.json()["error"], resp.text


def test_a_stranger_learns_nothing_from_validation(platform: RunningPlatform) -> None:
    """Authentication comes before the body is read: no 400/422 (or 404) for strangers."""
    for method, path, kw in (
        (
            "POST",
            "/api/generate",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/api/generate", {"json": {"mode": "nonsense"}}),
        ("POST", "/api/train", {"files": {"images": ("a.jpg", b"x")}}),
        ("GET", "/api/no-such-route", {}),
    ):
        resp = httpx.request(method, platform.url + path, timeout=30, **kw)  # type: ignore[arg-type]
        assert resp.status_code == 401, (path, resp.text)


def test_the_owner_is_an_admin(platform: RunningPlatform) -> None:
    me = platform.get("/api/me")
    assert me.status_code == 200 and me.json()["name"] == "owner" and me.json()["role"] == "admin"
    secrets = platform.data_dir / "secrets"
    for name in ("owner.token", "internal.token", "metrics.token"):
        assert (secrets / name).stat().st_mode & 0o777 == 0o600, name
    assert secrets.stat().st_mode & 0o777 == 0o700


def test_websocket_without_a_credential_is_refused(platform: RunningPlatform) -> None:
    for headers in ({}, {"Authorization": "Bearer msb_" + "B" * 43}):
        with pytest.raises(InvalidStatus) as refused:
            connect(platform.ws_url, additional_headers=headers, open_timeout=30)
        assert refused.value.response.status_code == 401
        assert SIGN_IN in json.loads(refused.value.response.body or b"{}")["error"]
    job_id = platform.submit()
    with platform.ws(f"?jobId={job_id}") as ws:  # the owner's token works
        assert json.loads(ws.recv(timeout=30))["jobId"] == job_id


def test_health_detail_only_with_a_credential(platform: RunningPlatform) -> None:
    stranger = httpx.get(platform.url + "/health", timeout=30)
    assert stranger.status_code == 200 and stranger.json() == {"status": "ok"}
    signed_in = platform.get("/health").json()
    assert signed_in["status"] == "ok" and "redis" in signed_in["components"]
    assert httpx.get(platform.url + "/livez", timeout=30).json() == {"status": "ok"}


def test_metrics_need_the_metrics_token(platform: RunningPlatform) -> None:
    for headers in ({}, platform.headers, {"Authorization": "Bearer wrong"}):
        resp = httpx.get(platform.url + "/metrics", headers=headers, timeout=30)
        assert resp.status_code == 401 and "metrics token" in resp.json()["error"]
    assert "myspinbot_http_requests_total" in platform.metrics()


def test_the_status_function_answers_only_the_internal_token(platform: RunningPlatform) -> None:
    status_url = platform.state()["urls"]["status"]
    internal = (platform.data_dir / "secrets" / "internal.token").read_text().strip()
    for headers in ({}, platform.headers, {"Authorization": "Bearer wrong"}):
        resp = httpx.get(status_url + "/jobs", headers=headers, timeout=30)
        assert resp.status_code == 401 and "internal token" in resp.json()["error"]
    ok = httpx.get(status_url + "/jobs", headers={"Authorization": f"Bearer {internal}"})
    assert ok.status_code == 200 and "jobs" in ok.json()


def _db_text(platform: RunningPlatform) -> str:
    conn = sqlite3.connect(platform.data_dir / "myspinbot.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            " ".join(str(v) for v in row)
            for t in tables
            for row in conn.execute(f'SELECT * FROM "{t}"')
        )
    finally:
        conn.close()


def test_token_lifecycle(platform: RunningPlatform) -> None:
    member = platform.add_user("tokenuser")
    as_member = {"Authorization": f"Bearer {member}"}
    made = httpx.post(
        platform.url + "/api/tokens", json={"name": "laptop"}, headers=as_member, timeout=30
    )
    assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(platform.url + "/api/me", headers=bearer).json()["name"] == "tokenuser"
    # Shown once: a listing has no token, SQL has only its hash.
    listed = httpx.get(platform.url + "/api/tokens", headers=as_member).json()["tokens"]
    assert {t["name"] for t in listed} == {"first token", "laptop"}
    assert token not in json.dumps(listed)
    stored = _db_text(platform)
    assert token not in stored and member not in stored and token[4:] not in stored
    # Revoked: 401 on the next request, on HTTP and on /ws.
    assert (
        httpx.delete(platform.url + f"/api/tokens/{token_id}", headers=as_member).status_code == 204
    )
    gone = httpx.get(platform.url + "/api/me", headers=bearer)
    assert gone.status_code == 401 and "revoked or expired" in gone.json()["error"]
    with pytest.raises(InvalidStatus) as refused:
        connect(platform.ws_url, additional_headers=bearer, open_timeout=30)
    assert refused.value.response.status_code == 401
    # Expired: a token whose expiry has passed (set in SQL; nobody waits days in a test).
    made = platform.post("/api/tokens", json={"name": "short", "expiresInDays": 1})
    short = {"Authorization": f"Bearer {made.json()['token']}"}
    assert httpx.get(platform.url + "/api/me", headers=short).status_code == 200
    conn = sqlite3.connect(platform.data_dir / "myspinbot.db")
    with conn:
        conn.execute(
            "UPDATE api_tokens SET expires_at = ? WHERE id = ?",
            (time.time() - 1, made.json()["id"]),
        )
    conn.close()
    assert httpx.get(platform.url + "/api/me", headers=short).status_code == 401
    # A member cannot see or revoke someone else's token, nor manage users.
    owner_tokens = platform.get("/api/tokens").json()["tokens"]
    theirs = httpx.delete(platform.url + f"/api/tokens/{owner_tokens[0]['id']}", headers=as_member)
    assert theirs.status_code == 404
    assert httpx.get(platform.url + "/api/users", headers=as_member).status_code == 403
    assert httpx.get(platform.url + "/api/tokens?all=true", headers=as_member).status_code == 403


def test_the_login_link_up_printed_opens_one_session(platform: RunningPlatform) -> None:
    links = platform.login_links()
    assert links and links[-1].startswith(f"http://127.0.0.1:{platform.port}/?token=msb_")
    token = links[-1].split("?token=", 1)[1]
    as_bearer = httpx.get(platform.url + "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401  # a login token is no API token
    with httpx.Client(base_url=platform.url, timeout=30) as browser:
        signed_in = browser.post("/api/session", json={"token": token})
        assert signed_in.status_code == 200 and signed_in.json()["name"] == "owner"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http here
        assert browser.get("/api/me").json()["role"] == "admin"
        # Used once.
        again = httpx.post(platform.url + "/api/session", json={"token": token}, timeout=30)
        assert again.status_code == 401 and "already used" in again.json()["error"]
        # Sign-out ends the session.
        out = browser.delete("/api/session", headers={"X-MySpinBot-CSRF": "1"})
        assert out.status_code == 204
        browser.cookies.clear()
    ended = httpx.get(
        platform.url + "/api/me", cookies={"myspinbot_session": _cookie_value(cookie)}
    )
    assert ended.status_code == 401


def _cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def test_session_over_https_gets_a_secure_cookie(platform: RunningPlatform) -> None:
    resp = httpx.post(
        platform.url + "/api/session",
        json={"token": platform.token},
        headers={"X-Forwarded-Proto": "https"},
        timeout=30,
    )
    assert resp.status_code == 200 and "Secure" in resp.headers["set-cookie"]


def test_cookie_requests_need_the_csrf_header_and_their_own_origin(
    platform: RunningPlatform,
) -> None:
    cookies = {"myspinbot_session": platform.sign_in()}
    body: dict[str, Any] = {"mode": "direct", "narration": "Hi.", "stage": "{}"}
    url = platform.url + "/api/generate"
    own = platform.url

    def post(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(url, json=body, cookies=cookies, headers=headers, timeout=30)

    # A cross-site form post: the cookie, no custom header.
    no_header = post({"Origin": "https://evil.example"})
    assert no_header.status_code == 403 and "X-MySpinBot-CSRF" in no_header.json()["error"]
    assert post({}).status_code == 403
    foreign = post({"X-MySpinBot-CSRF": "1", "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.json()["error"]
    assert post({"X-MySpinBot-CSRF": "1", "Origin": "null"}).status_code == 403
    assert post({"X-MySpinBot-CSRF": "1", "Origin": own}).status_code == 202
    assert post({"X-MySpinBot-CSRF": "1"}).status_code == 202
    # Reading needs no header; a Bearer request is no CSRF risk (no ambient credential).
    assert httpx.get(platform.url + "/api/me", cookies=cookies).status_code == 200
    assert platform.post("/api/generate", json=body).status_code == 202
    # Signing in from another site is refused too (login CSRF).
    login = httpx.post(
        platform.url + "/api/session",
        json={"token": platform.token},
        headers={"Origin": "https://evil.example"},
    )
    assert login.status_code == 403


def test_a_websocket_from_another_origin_is_refused(platform: RunningPlatform) -> None:
    cookie = {"Cookie": f"myspinbot_session={platform.sign_in()}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(platform.ws_url, origin="https://evil.example", additional_headers=cookie)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert "another site" in json.loads(refused.value.response.body or b"{}")["error"]
    job_id = platform.submit()
    with connect(
        platform.ws_url + f"?jobId={job_id}",
        origin=platform.url,  # type: ignore[arg-type]
        additional_headers=cookie,
    ) as ws:  # the UI's own page, with its session cookie
        assert json.loads(ws.recv(timeout=30))["jobId"] == job_id


def test_a_foreign_host_name_is_refused(platform: RunningPlatform) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1."""
    resp = platform.get("/api/me", headers={"Host": f"evil.example:{platform.port}"})
    assert resp.status_code == 400 and "MYSPINBOT_ALLOWED_HOSTS" in resp.json()["error"]
    assert (
        platform.get("/api/me", headers={"Host": f"localhost:{platform.port}"}).status_code == 200
    )


def test_admins_manage_users(platform: RunningPlatform) -> None:
    token = platform.add_user("removable")
    names = {u["name"] for u in platform.get("/api/users").json()["users"]}
    assert {"owner", "removable"} <= names
    dup = platform.post("/api/users", json={"name": "removable"})
    assert dup.status_code == 409 and "already exists" in dup.json()["error"]
    assert platform.delete("/api/users/removable").status_code == 204
    assert platform.delete("/api/users/removable").status_code == 404
    gone = httpx.get(platform.url + "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401
    last = platform.delete("/api/users/owner")
    assert last.status_code == 409 and "last admin" in last.json()["error"]
