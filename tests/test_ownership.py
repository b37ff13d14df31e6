"""Who sees what (issue 11), on the real platform (`myspinbot up` with the status and
ws-relay functions and the scripted job function, which records a profile for a train
job as the trainer does).

- Two members neither see, cancel, retry, generate from, follow nor download each other's
  objects; someone else's object answers exactly like a missing one; an admin sees both.
- The authorization matrix, built from the live OpenAPI document: every operation x
  {no credential, a revoked token, another member, the owner, an admin} -> the expected
  status. An operation without a rule, or one that answers without a credential, fails it
  (`test_the_matrix_catches_a_route_without_auth` shows both on an added route).
- A member past their own job limit gets 429 with Retry-After.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gateway.app import create_app
from myspinbot.settings import Settings
from tests.db.test_ownership_history import OLD_TABLES
from tests.media_fixtures import face_photos, voice_clip
from tests.support import RunningPlatform, wait_for

ACTORS = ("none", "revoked", "other", "owner", "admin")
USER_MAX_QUEUED = 3
USER_MAX_ACTIVE = 4


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class Member:
    name: str
    token: str
    id: str = ""


@dataclass
class World:
    """The platform and the objects the owner (alice, a member) made through the API."""

    platform: RunningPlatform
    alice: Member
    bob: Member
    admin: Member
    revoked_token: str
    ids: dict[str, str] = field(default_factory=dict)  # what alice made, by role

    def token(self, actor: str) -> str | None:
        return {
            "none": None,
            "revoked": self.revoked_token,
            "other": self.bob.token,
            "owner": self.alice.token,
            "admin": self.admin.token,
        }[actor]

    def call(self, actor: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**bearer(self.token(actor)), **kw.pop("headers", {})}
        return httpx.request(method, self.platform.url + path, headers=headers, timeout=30, **kw)


def generate_body(test: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"mode": "direct", "narration": "Hello there.", "stage": json.dumps(test or {}), **extra}


def submit(w: World, who: Member, test: dict[str, Any] | None = None, **extra: Any) -> str:
    resp = httpx.post(
        w.platform.url + "/api/generate",
        json=generate_body(test, **extra),
        headers=bearer(who.token),
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["jobId"])


def wait_state(w: World, who: Member, job_id: str, states: set[str]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        resp = httpx.get(
            f"{w.platform.url}/api/status/{job_id}", headers=bearer(who.token), timeout=30
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body if body["state"] in states else None

    return dict(wait_for(done, timeout=90, what=f"job {job_id} to be {states}", interval=0.2))


def train_files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (name, data, "image/jpeg")) for name, data in face_photos(2)]


def portrait_files() -> dict[str, tuple[str, bytes, str]]:
    name, data = face_photos(1)[0]
    return {"image": (name, data, "image/jpeg")}


def narration_files() -> dict[str, tuple[str, bytes, str]]:
    return {"audio": ("narration.wav", voice_clip(seconds=2.0), "audio/wav")}


def user_id(platform: RunningPlatform, token: str) -> str:
    resp = httpx.get(platform.url + "/api/me", headers=bearer(token), timeout=30)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = {
        "MYSPINBOT_USER_MAX_QUEUED": str(USER_MAX_QUEUED),
        "MYSPINBOT_USER_MAX_ACTIVE": str(USER_MAX_ACTIVE),
    }
    platform = RunningPlatform(tmp_path_factory.mktemp("ownership"), env=env).start()
    try:
        alice = Member("alice", platform.add_user("alice"))
        bob = Member("bob", platform.add_user("bob"))
        admin = Member("owner", platform.token)
        for m in (alice, bob, admin):
            m.id = user_id(platform, m.token)
        # A token of alice's, revoked: it must open nothing any more.
        made = platform.post("/api/tokens", json={"name": "old", "user": "alice"})
        assert made.status_code == 201, made.text
        revoked = platform.request("DELETE", f"/api/tokens/{made.json()['id']}")
        assert revoked.status_code == 204, revoked.text
        w = World(platform, alice, bob, admin, made.json()["token"])
        _make_alices_objects(w)
        yield w
    finally:
        assert platform.stop() == 0, "myspinbot up did not exit cleanly"


def _make_alices_objects(w: World) -> None:
    ids = w.ids
    ids["job"] = submit(w, w.alice, {"steps": 1, "echo": "alice"})
    ids["failed"] = submit(w, w.alice, {"fail": "always"})
    ids["failed_to_retry"] = submit(w, w.alice, {"fail": "always"})
    trained = w.call("owner", "POST", "/api/train", data={"name": "Alice"}, files=train_files())
    assert trained.status_code == 202, trained.text
    ids["train"] = ids["profile"] = trained.json()["jobId"]
    # Alice's objects the matrix deletes (the others must stay for the other operations).
    ids["job_to_delete"] = submit(w, w.alice, {"steps": 1})
    doomed = w.call("owner", "POST", "/api/train", data={"name": "Doomed"}, files=train_files())
    assert doomed.status_code == 202, doomed.text
    ids["profile_to_delete"] = doomed.json()["jobId"]
    portrait = w.call("owner", "POST", "/api/portraits", files=portrait_files())
    assert portrait.status_code == 201, portrait.text
    ids["portrait"] = portrait.json()["portraitId"]
    narration = w.call("owner", "POST", "/api/narrations", files=narration_files())
    assert narration.status_code == 201, narration.text
    ids["narration"] = narration.json()["narrationId"]
    token = w.call("owner", "POST", "/api/tokens", json={"name": "spare"})
    assert token.status_code == 201, token.text
    ids["token"] = token.json()["id"]
    for key in ("job", "train", "job_to_delete", "profile_to_delete"):
        wait_state(w, w.alice, ids[key], {"completed"})
    for key in ("failed", "failed_to_retry"):
        wait_state(w, w.alice, ids[key], {"failed"})
    # Bob's own job, so lists have something of someone else's in them.
    ids["bobs_job"] = submit(w, w.bob, {"steps": 1})
    wait_state(w, w.bob, ids["bobs_job"], {"completed"})


# --- acceptance 3: two members and an admin ---------------------------------------------------


def _same_as_missing(
    w: World, method: str, template: str, real_id: str, **kw: Any
) -> httpx.Response:
    """Bob's answer for alice's object equals his answer for an id that does not exist."""
    missing = uuid.uuid4().hex
    theirs = w.call("other", method, template.format(id=real_id), **kw)
    none = w.call("other", method, template.format(id=missing), **kw)
    assert theirs.status_code == none.status_code, (template, theirs.text, none.text)
    assert theirs.json() == json.loads(none.text.replace(missing, real_id)), template
    return theirs


def test_a_member_cannot_tell_anothers_objects_from_missing_ones(world: World) -> None:
    w, ids = world, world.ids
    for method, template, key in [
        ("GET", "/api/status/{id}", "job"),
        ("GET", "/api/jobs/{id}", "job"),
        ("POST", "/api/jobs/{id}/cancel", "job"),
        ("POST", "/api/jobs/{id}/retry", "failed"),
        ("GET", "/api/profiles/{id}", "profile"),
    ]:
        assert _same_as_missing(w, method, template, ids[key]).status_code == 404
    # Generating from alice's profile, portrait or narration: as if they did not exist.
    for real, extra in [
        (ids["profile"], {"profileId": ids["profile"]}),
        (ids["portrait"], {"options": {"portraitImage": ids["portrait"]}}),
        (ids["narration"], {"narration": None, "options": {"narrationAudio": ids["narration"]}}),
    ]:
        body = json.dumps(_clean(generate_body(**extra)))
        missing_id = uuid.uuid4().hex
        theirs = w.call("other", "POST", "/api/generate", json=json.loads(body))
        missing = w.call(
            "other", "POST", "/api/generate", json=json.loads(body.replace(real, missing_id))
        )
        assert theirs.status_code in (404, 422), theirs.text
        assert theirs.status_code == missing.status_code, (theirs.text, missing.text)
        assert theirs.json() == json.loads(missing.text.replace(missing_id, real))
        # ...while alice herself may use each of them.
        mine = w.call("owner", "POST", "/api/generate", json=json.loads(body))
        assert mine.status_code == 202, mine.text
        wait_state(w, w.alice, mine.json()["jobId"], {"completed"})
    # Alice's things are all still there and hers.
    assert wait_state(w, w.alice, ids["job"], {"completed"})["owner"] == w.alice.id


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _job_ids(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {j["jobId"] for j in resp.json()["jobs"]}


def _profile_ids(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {p["id"] for p in resp.json()["profiles"]}


def test_lists_hold_your_own_and_an_admin_sees_everyones(world: World) -> None:
    w, ids = world, world.ids
    alices, bobs = ids["job"], ids["bobs_job"]
    assert alices in _job_ids(w.call("owner", "GET", "/api/jobs", params={"limit": 200}))
    assert bobs not in _job_ids(w.call("owner", "GET", "/api/jobs", params={"limit": 200}))
    assert alices not in _job_ids(w.call("other", "GET", "/api/jobs", params={"limit": 200}))
    everyone = _job_ids(w.call("admin", "GET", "/api/jobs", params={"limit": 200}))
    assert {alices, bobs} <= everyone
    only_bob = w.call("admin", "GET", "/api/jobs", params={"limit": 200, "owner": w.bob.id})
    assert bobs in _job_ids(only_bob) and alices not in _job_ids(only_bob)
    # A member asking for someone else's list gets nothing of theirs.
    peek = w.call("other", "GET", "/api/jobs", params={"owner": w.alice.id})
    assert _job_ids(peek) == set() and peek.json()["total"] == 0

    assert ids["profile"] in _profile_ids(w.call("owner", "GET", "/api/profiles"))
    assert ids["profile"] not in _profile_ids(w.call("other", "GET", "/api/profiles"))
    assert ids["profile"] in _profile_ids(w.call("admin", "GET", "/api/profiles"))
    assert (
        _profile_ids(w.call("admin", "GET", "/api/profiles", params={"owner": w.bob.id})) == set()
    )

    failed = {d["jobId"] for d in w.call("owner", "GET", "/api/dead-letters").json()["deadLetters"]}
    assert ids["failed"] in failed
    bobs_letters = w.call("other", "GET", "/api/dead-letters").json()["deadLetters"]
    assert ids["failed"] not in {d["jobId"] for d in bobs_letters}
    admins_letters = w.call("admin", "GET", "/api/dead-letters").json()["deadLetters"]
    assert ids["failed"] in {d["jobId"] for d in admins_letters}


def test_an_admin_reads_and_uses_a_members_objects(world: World) -> None:
    w, ids = world, world.ids
    job = w.call("admin", "GET", f"/api/jobs/{ids['job']}")
    assert job.status_code == 200 and job.json()["owner"] == w.alice.id
    profile = w.call("admin", "GET", f"/api/profiles/{ids['profile']}")
    assert profile.status_code == 200 and profile.json()["owner"] == w.alice.id


def test_download_links_reach_only_the_owner_and_admins(world: World) -> None:
    """The only way to a stored file is a signed link inside a profile or job result;
    alice gets hers, and nothing bob can read carries it."""
    w, ids = world, world.ids
    artifacts = w.call("owner", "GET", f"/api/profiles/{ids['profile']}").json()["artifacts"]
    url = artifacts[0]["url"]
    assert httpx.get(url, timeout=30).status_code == 200  # the link works for who has it
    key = artifacts[0]["key"]
    for path in (
        "/api/profiles",
        "/api/jobs?limit=200",
        f"/api/jobs/{ids['train']}",
        f"/api/status/{ids['train']}",
        f"/api/profiles/{ids['profile']}",
    ):
        text = w.call("other", "GET", path).text
        assert key not in text and "X-Amz-Signature" not in text, path


# --- WebSocket -------------------------------------------------------------------------------


def _first_message(w: World, query: str, token: str) -> dict[str, Any]:
    with connect(w.platform.ws_url + query, additional_headers=bearer(token)) as ws:
        return dict(json.loads(ws.recv(timeout=30)))


def test_a_websocket_follows_only_your_own_jobs(world: World) -> None:
    w, job = world, world.ids["job"]
    mine = _first_message(w, f"?jobId={job}", w.alice.token)
    assert mine["snapshot"] and mine["jobId"] == job and mine["state"] == "completed"
    assert _first_message(w, f"?jobId={job}", w.admin.token)["snapshot"]
    # Bob: refused exactly like a job that does not exist.
    missing = uuid.uuid4().hex
    theirs = _first_message(w, f"?jobId={job}", w.bob.token)
    nothing = _first_message(w, f"?jobId={missing}", w.bob.token)
    assert theirs["type"] == "error" and theirs["code"] == "unknown_job"
    assert theirs == json.loads(json.dumps(nothing).replace(missing, job))
    # Subscribing by message on an open connection: the same.
    with connect(w.platform.ws_url, additional_headers=bearer(w.bob.token)) as ws:
        ws.send(json.dumps({"type": "subscribe", "jobId": job}))
        assert json.loads(ws.recv(timeout=30))["code"] == "unknown_job"
    # No credential, or a revoked one: the handshake itself is refused.
    for token in (None, w.revoked_token):
        with pytest.raises(InvalidStatus) as refused:
            connect(w.platform.ws_url + f"?jobId={job}", additional_headers=bearer(token))
        assert refused.value.response.status_code == 401


# --- acceptance 8 (second half): the per-user job limit ---------------------------------------


def test_a_member_past_their_job_limit_gets_429_with_retry_after(world: World) -> None:
    w = world
    carol = Member("carol", w.platform.add_user("carol"))
    long_job = {"steps": 600, "sleep": 0.1}  # reports often, so a cancel stops it at once
    # Her first USER_MAX_QUEUED jobs are accepted whatever else happens; by the time she
    # has USER_MAX_ACTIVE unfinished (waiting or running) the next is refused (earlier,
    # when USER_MAX_QUEUED of them have not started yet).
    held = [submit(w, carol, long_job) for _ in range(USER_MAX_QUEUED)]
    while True:
        resp = w.platform.post(
            "/api/generate", json=generate_body(long_job), headers=bearer(carol.token)
        )
        if resp.status_code != 202:
            break
        held.append(resp.json()["jobId"])
        assert len(held) <= USER_MAX_ACTIVE, "more unfinished jobs accepted than the limit"
    refused = resp
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    message = refused.json()["error"]
    assert "limit is" in message and "per user" in message and "try again" in message, message
    # Other users are not held back by carol's jobs (an admin is not limited at all).
    assert submit(w, w.bob, {"steps": 1})
    # Once her jobs end, carol may submit again.
    for job_id in held:
        cancel = w.platform.post(f"/api/jobs/{job_id}/cancel", headers=bearer(carol.token))
        assert cancel.status_code in (202, 409), cancel.text
    for job_id in held:
        wait_state(w, carol, job_id, {"cancelled", "completed"})
    assert submit(w, carol, {"steps": 1})


# --- history from before accounts --------------------------------------------------------------


def test_an_upgraded_platforms_history_belongs_to_the_owner_account(tmp_path: Path) -> None:
    """A data directory from before accounts (a job and a profile, no owners): the first
    `up` makes the owner account and gives it that history; members do not see it."""
    data_dir = tmp_path / "upgraded"
    data_dir.mkdir()
    engine = sa.create_engine(f"sqlite:///{data_dir / 'myspinbot.db'}")
    with engine.begin() as conn:
        for statement in OLD_TABLES:
            conn.execute(sa.text(statement))
    engine.dispose()
    platform = RunningPlatform(data_dir).start()
    try:
        owner = user_id(platform, platform.token)
        job = platform.get("/api/jobs/old-job")
        assert job.status_code == 200 and job.json()["owner"] == owner, job.text
        profile = platform.get("/api/profiles/old-profile")
        assert profile.status_code == 200 and profile.json()["owner"] == owner, profile.text
        member = bearer(platform.add_user("newcomer"))
        assert platform.get("/api/jobs/old-job", headers=member).status_code == 404
        assert platform.get("/api/profiles", headers=member).json()["profiles"] == []
        assert "from before accounts now belong to" in platform.log.read_text()
    finally:
        assert platform.stop() == 0


# --- acceptance 1: the authorization matrix, from the OpenAPI document -------------------------

Expect = dict[str, set[int]]
Request = Callable[[World, str], dict[str, Any]]
Check = Callable[[World, str, httpx.Response], None]


def _no_request(w: World, actor: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Rule:
    """What one operation answers each actor. `none` and `revoked` default to 401."""

    expect: Expect
    params: Callable[[World], dict[str, str]] = lambda w: {}
    request: Request = _no_request
    check: Check | None = None  # more than the status (lists: whose objects are in them)

    def expected(self, actor: str) -> set[int]:
        return self.expect.get(actor, {401})


def public(ok: set[int], request: Request = _no_request, **per_actor: set[int]) -> Rule:
    return Rule({a: per_actor.get(a, ok) for a in ACTORS}, request=request)


def signed_in(ok: set[int], request: Request = _no_request, check: Check | None = None) -> Rule:
    """Any signed-in user, each for themselves."""
    return Rule({"other": ok, "owner": ok, "admin": ok}, request=request, check=check)


def admins_only(ok: set[int], request: Request = _no_request, **kw: Any) -> Rule:
    return Rule({"other": {403}, "owner": {403}, "admin": ok}, request=request, **kw)


def owned(
    params: Callable[[World], dict[str, str]],
    owner: set[int],
    admin: set[int] | None = None,
    request: Request = _no_request,
) -> Rule:
    """An operation on alice's object: bob gets the missing object's 404."""
    return Rule({"other": {404}, "owner": owner, "admin": admin or owner}, params, request)


def own_list(field_name: str, id_field: str, key: str, **kw: Any) -> Rule:
    """A list: alice's object is in hers and in an admin's, never in bob's."""

    def check(w: World, actor: str, resp: httpx.Response) -> None:
        found = {item[id_field] for item in resp.json()[field_name]}
        assert (w.ids[key] in found) == (actor != "other"), (actor, field_name)

    return signed_in({200}, check=check, **kw)


def _job(key: str) -> Callable[[World], dict[str, str]]:
    return lambda w: {"job_id": w.ids[key]}


def _me(w: World, actor: str, resp: httpx.Response) -> None:
    member = {"other": w.bob, "owner": w.alice, "admin": w.admin}[actor]
    assert resp.json()["id"] == member.id


def _session(w: World, actor: str) -> dict[str, Any]:
    return {"json": {"token": w.token(actor) or "msb_" + "x" * 43}}


def _generate_from_alices(w: World, actor: str) -> dict[str, Any]:
    return {
        "json": generate_body(
            {"steps": 1},
            profileId=w.ids["profile"],
            options={"portraitImage": w.ids["portrait"]},
        )
    }


def _new_user(w: World, actor: str) -> dict[str, Any]:
    return {"json": {"name": f"user-{uuid.uuid4().hex[:8]}"}}


def _as_a_new_user(w: World, actor: str) -> dict[str, Any]:
    """DELETE /api/me removes whoever asks: a member here is a fresh user of their own, so
    bob and alice stay for the other operations. The admin is the platform's only admin,
    whose account cannot go (409)."""
    if actor in ("other", "owner"):
        return {"headers": bearer(w.platform.add_user(f"leaving-{uuid.uuid4().hex[:8]}"))}
    return {}


def _all_tokens(w: World, actor: str) -> dict[str, Any]:
    return {"params": {"all": "true"}} if actor == "admin" else {}


# Every operation of the API. A new one must get a rule here: the matrix fails until it does.
RULES: dict[tuple[str, str], Rule] = {
    ("POST", "/api/session"): public({200}, _session, none={401}, revoked={401}),
    ("DELETE", "/api/session"): signed_in({204}),
    ("GET", "/api/me"): signed_in({200}, check=_me),
    ("DELETE", "/api/me"): Rule(
        {"other": {204}, "owner": {204}, "admin": {409}}, request=_as_a_new_user
    ),
    ("GET", "/api/users"): admins_only({200}),
    ("POST", "/api/users"): admins_only({201}, _new_user),
    ("DELETE", "/api/users/{user}"): Rule(
        {"other": {403}, "owner": {403}, "admin": {204}}, lambda w: {"user": w.ids["victim"]}
    ),
    ("GET", "/api/tokens"): own_list("tokens", "id", "token", request=_all_tokens),
    ("POST", "/api/tokens"): signed_in({201}, lambda w, a: {"json": {"name": "matrix"}}),
    ("DELETE", "/api/tokens/{token_id}"): owned(
        lambda w: {"token_id": w.ids["token"]}, {204}, {204, 404}
    ),
    ("POST", "/api/train"): signed_in(
        {202}, lambda w, a: {"data": {"name": "M"}, "files": train_files()}
    ),
    ("POST", "/api/generate"): Rule(
        {"other": {404}, "owner": {202}, "admin": {202}}, request=_generate_from_alices
    ),
    ("POST", "/api/portraits"): signed_in({201}, lambda w, a: {"files": portrait_files()}),
    ("POST", "/api/narrations"): signed_in({201}, lambda w, a: {"files": narration_files()}),
    ("GET", "/api/status/{job_id}"): owned(_job("job"), {200}),
    ("GET", "/api/jobs"): own_list(
        "jobs", "jobId", "job", request=lambda w, a: {"params": {"limit": 200}}
    ),
    ("GET", "/api/jobs/{job_id}"): owned(_job("job"), {200}),
    # Deleted by alice: the admin (after her) finds it gone.
    ("DELETE", "/api/jobs/{job_id}"): owned(_job("job_to_delete"), {204}, {404}),
    # A finished job: the owner reaches it, and learns it cannot be cancelled.
    ("POST", "/api/jobs/{job_id}/cancel"): owned(_job("job"), {409}),
    # The admin's retry finds it queued again (409) or, already failed again, retries it.
    ("POST", "/api/jobs/{job_id}/retry"): owned(_job("failed_to_retry"), {202}, {202, 409}),
    ("GET", "/api/dead-letters"): own_list("deadLetters", "jobId", "failed"),
    ("GET", "/api/profiles"): own_list("profiles", "id", "profile"),
    ("GET", "/api/profiles/{profile_id}"): owned(lambda w: {"profile_id": w.ids["profile"]}, {200}),
    ("DELETE", "/api/profiles/{profile_id}"): owned(
        lambda w: {"profile_id": w.ids["profile_to_delete"]}, {204}, {404}
    ),
    ("GET", "/api/capabilities"): signed_in({200}),
    ("GET", "/livez"): public({200}),
    ("GET", "/health"): public({200}),
}


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]


def unclassified(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [op for op in operations(doc) if op not in RULES]


def answers_without_credential(client: httpx.Client, op: tuple[str, str]) -> int | None:
    """The status of an operation that did NOT refuse a request without a credential."""
    method, path = op
    resp = client.request(method, path.replace("{", "").replace("}", ""))
    return None if resp.status_code == 401 else resp.status_code


def test_the_authorization_matrix(world: World) -> None:
    w = world
    victim = w.platform.post("/api/users", json={"name": "victim"})
    assert victim.status_code == 201, victim.text
    w.ids["victim"] = "victim"
    doc = w.call("owner", "GET", "/openapi.json").json()
    ops = operations(doc)
    assert not unclassified(doc), f"operations without a rule: {unclassified(doc)}"
    assert set(RULES) <= set(ops), f"rules for operations that are gone: {set(RULES) - set(ops)}"

    failures: list[str] = []
    for op in ops:
        method, path = op
        rule = RULES[op]
        url = path.format(**rule.params(w))
        for actor in ACTORS:
            resp = w.call(actor, method, url, **rule.request(w, actor))
            if resp.status_code not in rule.expected(actor):
                failures.append(
                    f"{method} {path} as {actor}: {resp.status_code}, expected "
                    f"{sorted(rule.expected(actor))}: {resp.text[:200]}"
                )
            elif rule.check is not None and resp.status_code < 300:
                rule.check(w, actor, resp)
            if resp.status_code >= 400:
                # Every refusal is JSON with a sentence a person can act on.
                assert resp.json().get("error"), f"{method} {path} as {actor}: {resp.text}"
    assert not failures, "\n".join(failures)
    assert len(ops) >= 20  # the whole API, not a few routes


def test_the_matrix_catches_a_route_without_auth(tmp_path: Path) -> None:
    """A route added without a rule fails the classification, and one that answers
    without a credential fails the matrix's first column. (Outside /api, where nothing
    signs a caller in unless the route asks for a user.)"""
    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/export")
    async def export() -> dict[str, str]:
        return {"everyone's": "faces"}

    assert unclassified(app.openapi()) == [("GET", "/export")]
    client = TestClient(app, base_url="http://127.0.0.1")  # no lifespan: no services needed
    assert answers_without_credential(client, ("GET", "/export")) == 200
