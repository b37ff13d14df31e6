"""Signing in to the web UI (issue 11, acceptance 2), in Chromium against the real
platform: the one-time link makes a session and leaves the address bar; the signed-in
page trains and generates under its Content-Security-Policy; sign-out ends the
session. A page on another origin can neither post a form with the person's cookie
nor open the live WebSocket with it."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from gateway.ui import INDEX
from tests.media_fixtures import face_photos
from tests.support import RunningPlatform, wait_for
from tests.ui.conftest import SESSION_COOKIE, Watch, as_file, sign_in
from tests.ui.test_ui import GENERATE_SUBMIT, MIME, ensure_profile, job_row, submit_train

CSRF_HEADER = "x-myspinbot-csrf"
REFUSED_401 = r"Failed to load resource: the server responded with a status of 401"


def owner_name(platform: RunningPlatform) -> str:
    resp = platform.get("/api/me")
    assert resp.status_code == 200, resp.text
    return str(resp.json()["name"])


def session_cookie(page: Page) -> dict[str, Any]:
    cookies = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(cookies) == 1, page.context.cookies()
    return dict(cookies[0])


def job_ids(platform: RunningPlatform) -> set[str]:
    resp = platform.get("/api/jobs?limit=200")
    assert resp.status_code == 200, resp.text
    return {j["jobId"] for j in resp.json()["jobs"]}


# --- the whole visit: link, train, generate, sign out ---------------------------------------------
@pytest.mark.timeout(900)  # a training and a video in one test, on a machine others share
def test_the_sign_in_link_signs_in_then_the_ui_trains_and_generates_and_sign_out_ends_it(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = watch.page
    link = platform.login_links()[-1]  # the one `myspinbot up` printed
    token = link.split("?token=", 1)[1]
    with page.expect_response("**/api/session") as exchanged:
        page.goto(link)
    assert exchanged.value.status == 200, exchanged.value.text()
    assert exchanged.value.request.method == "POST"

    # Signed in: the name shows, and the token is gone from the address bar.
    expect(page.locator("#me-name")).to_have_text(owner_name(platform))
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    assert page.url == platform.url + "/", page.url
    assert token not in page.evaluate("location.href + document.referrer")
    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert SESSION_COOKIE not in page.evaluate("document.cookie")  # script cannot read it
    expect(page.locator("#live")).to_have_attribute("data-live", "open")
    watch.shot("signed-in")

    # Train a profile: the request rides on the cookie (no token in the page) with the
    # CSRF header.
    page.set_input_files(
        "#photos", [as_file(n, d, MIME[n.rsplit(".", 1)[1]]) for n, d in face_photos(4)]
    )
    page.fill("#profile-name", "Signed in")
    page.click("#train-advanced summary")
    page.fill("#train-advanced input[name=steps]", "5")
    page.fill("#train-advanced input[name=rank]", "4")
    train_id = submit_train(page)
    sent = watch.posts("/api/train")[0].all_headers()
    assert sent.get(CSRF_HEADER) == "1" and "authorization" not in sent, sent
    assert SESSION_COOKIE in sent.get("cookie", ""), sent
    expect(job_row(page, train_id)).to_have_attribute("data-state", "completed", timeout=300_000)
    profile = page.locator(f'.profile[data-profile-id="{train_id}"]')
    wait_for(
        lambda: profile.locator(".thumb img").evaluate("i => i.complete && i.naturalWidth > 0"),
        timeout=10,
        what="the profile's portrait (an image from S3, under the page's CSP)",
    )

    # Generate a video from it and play it inline (media from S3, under the CSP).
    page.select_option("#gen-profile", train_id)
    page.check('input[name="mode"][value="direct"]')
    page.fill("#gen-narration", "Hello! I signed in with a link.")
    with page.expect_response("**/api/generate") as info:
        page.click(GENERATE_SUBMIT)
    assert info.value.status == 202, info.value.text()
    assert info.value.request.all_headers().get(CSRF_HEADER) == "1"
    row = job_row(page, str(info.value.json()["jobId"]))
    expect(row).to_have_attribute("data-state", "completed", timeout=480_000)
    video = row.locator("video")
    wait_for(
        lambda: video.evaluate("v => v.readyState >= 2 && v.duration > 0"),
        timeout=30,
        what="the video to load",
    )
    assert video.evaluate("v => v.error") is None
    assert watch.csp_violations() == []
    watch.shot("video")

    # Sign out: the login screen, and the old cookie is worth nothing.
    watch.allow(REFUSED_401)  # the reload's GET /api/me finds no session: that is the point
    with page.expect_response("**/api/session") as ended:
        page.click("#sign-out")
    assert ended.value.request.method == "DELETE"
    assert ended.value.request.all_headers().get(CSRF_HEADER) == "1"
    assert ended.value.ok, ended.value.text()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-reason")).to_have_text("You have signed out.")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#account")).to_be_hidden()
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    watch.shot("signed-out")
    old = {SESSION_COOKIE: cookie["value"]}
    assert httpx.get(platform.url + "/api/me", cookies=old).status_code == 401
    assert httpx.get(platform.url + "/api/jobs", cookies=old).status_code == 401

    # The link was for one sign-in: opened again, it is refused, and says so.
    page.goto(link)
    expect(page.locator("#login-reason")).to_contain_text("This sign-in link does not work")
    assert page.url == platform.url + "/"
    expect(page.locator("#app")).to_be_hidden()


# --- the sign-in form -----------------------------------------------------------------------------
def test_without_a_session_the_page_asks_for_a_token_and_a_pasted_one_signs_in(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = watch.page
    watch.allow(REFUSED_401)
    page.goto(platform.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert not watch.gets("/api/jobs") and not watch.gets("/api/profiles")  # asked nothing else
    watch.shot("login")

    # Nothing pasted: said here, nothing sent.
    page.click("#login-form button[type=submit]")
    error = page.locator('#login-form .field-error[data-error-for="token"]')
    expect(error).to_have_text("Paste your access token.")
    assert not watch.posts("/api/session")

    # A wrong token: the server's sentence, at the field.
    page.fill("#login-token", "msb_" + "x" * 43)
    with page.expect_response("**/api/session") as refused:
        page.click("#login-form button[type=submit]")
    assert refused.value.status == 401
    expect(error).to_have_text(refused.value.json()["error"])
    expect(page.locator("#app")).to_be_hidden()
    watch.shot("wrong-token")

    page.fill("#login-token", platform.token)
    with page.expect_response("**/api/session") as accepted:
        page.click("#login-form button[type=submit]")
    assert accepted.value.status == 200
    expect(page.locator("#me-name")).to_have_text(owner_name(platform))
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-live", "open")
    assert page.locator("#login-token").input_value() == ""  # not left in the page
    watch.shot("signed-in")


def test_a_link_with_a_wrong_token_leaves_the_address_bar_and_says_why(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = watch.page
    watch.allow(REFUSED_401)
    bad = "msb_" + "y" * 43
    page.goto(f"{platform.url}/?token={bad}")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-reason")).to_contain_text("This sign-in link does not work")
    assert page.url == platform.url + "/"
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]


# --- another origin -------------------------------------------------------------------------------
class Attacker:
    """A site on another origin: serves whatever page the test gives it, at /."""

    def __init__(self, host: str) -> None:
        self.page = b""
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(attacker.page)))
                self.end_headers()
                self.wfile.write(attacker.page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def same_site() -> Iterator[Attacker]:
    """127.0.0.1 on another port: another origin but the same site, so the browser
    does send the SameSite=Strict cookie; only the gateway's CSRF checks stand."""
    a = Attacker("127.0.0.1")
    yield a
    a.close()


@pytest.fixture(scope="module")
def cross_site() -> Iterator[Attacker]:
    """localhost: another site, so the browser keeps the cookie to itself."""
    a = Attacker("localhost")
    yield a
    a.close()


def forged_generate(platform: RunningPlatform, profile_id: str) -> bytes:
    """A page that posts a JSON body to /api/generate the moment it opens: a text/plain
    form whose one field name and value join into JSON (`name=value`)."""
    body = f'{{"profileId": "{profile_id}", "mode": "direct", "narration": "Forged.", "x": "'
    return (
        "<!doctype html><title>Win a prize</title>"
        f'<form id="f" method="POST" action="{platform.url}/api/generate" enctype="text/plain">'
        f"<input type=\"hidden\" name='{html.escape(body, quote=False)}' value='\"}}'>"
        "</form><script>document.getElementById('f').submit()</script>"
    ).encode()


@pytest.mark.parametrize("site", ["same_site", "cross_site"])
def test_a_form_posted_from_another_origin_is_refused(
    platform: RunningPlatform, watch: Watch, site: str, request: pytest.FixtureRequest
) -> None:
    attacker: Attacker = request.getfixturevalue(site)
    profile = ensure_profile(platform)
    page = sign_in(watch, platform)  # the victim has a session
    before = job_ids(platform)
    watch.allow(r"Failed to load resource: the server responded with a status of 40[13]")
    # The browser shows the gateway's refusal as a page and asks that origin for an icon.
    watch.allow(r"status of 404 .*/favicon\.ico\)$")

    attacker.page = forged_generate(platform, profile["id"])
    with page.expect_response(f"{platform.url}/api/generate") as info:
        page.goto(attacker.url)
    reply: Response = info.value
    sent = reply.request.all_headers()
    assert sent.get("origin") == attacker.url.rstrip("/"), sent
    if site == "same_site":
        # The cookie went along; the gateway refused anyway (no CSRF header, wrong Origin).
        assert SESSION_COOKIE in sent.get("cookie", ""), sent
        assert reply.status == 403, reply.text()
    else:
        assert SESSION_COOKIE not in sent.get("cookie", ""), sent
        assert reply.status in (401, 403), reply.text()
    assert reply.json()["error"]  # a readable sentence
    watch.shot("refused")
    assert job_ids(platform) == before, "the forged post started a job"


# Opens the live WebSocket to the gateway and asks for a job's events; resolves with
# what happened once the socket closes. (The 30 s is only a backstop against hanging
# the test run: a socket still open then fails the test, it is not a pass.)
WS_PROBE = """([url, jobId]) => new Promise((resolve) => {
  const seen = [];
  const ws = new WebSocket(url);
  setTimeout(() => { seen.push('still open'); resolve(seen); }, 30000);
  ws.onopen = () => { seen.push('open'); ws.send(JSON.stringify({type: 'subscribe', jobId})); };
  ws.onmessage = (e) => {
    seen.push('message ' + e.data);
    if (JSON.parse(e.data).snapshot) { ws.close(); }
  };
  ws.onclose = (e) => { seen.push('close ' + e.code); resolve(seen); };
})"""


def test_a_websocket_from_another_origin_is_refused(
    platform: RunningPlatform, watch: Watch, same_site: Attacker
) -> None:
    profile = ensure_profile(platform)
    job_id = profile.get("job_id") or profile["id"]
    page = sign_in(watch, platform)
    ws_url = "ws://" + urlsplit(platform.url).netloc + "/ws"

    # From the UI's own origin the person's job is there (the control).
    seen = page.evaluate(WS_PROBE, [ws_url, job_id])
    assert any(s.startswith("message") and '"snapshot"' in s for s in seen), seen

    # From another origin, with the same cookie (same site): refused, nothing told.
    watch.allow(r"WebSocket connection to '.*/ws' failed")
    same_site.page = b"<!doctype html><title>Hello</title><p>nothing to see</p>"
    page.goto(same_site.url)
    with page.expect_websocket() as opened:
        seen = page.evaluate(WS_PROBE, [ws_url, job_id])
    assert opened.value.url == ws_url
    assert not [s for s in seen if s.startswith("message")], seen
    assert seen[-1].startswith("close"), seen


# --- the Content-Security-Policy ------------------------------------------------------------------
def policy(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def test_the_page_carries_a_csp_without_inline_code_and_the_browser_enforces_it(
    platform: RunningPlatform, watch: Watch
) -> None:
    for path in ("/", "/ui/main.js", "/ui/app.css"):
        resp = httpx.get(platform.url + path)
        assert resp.status_code == 200
        csp = policy(resp.headers["content-security-policy"])
        assert csp["script-src"] == ["'self'"], csp
        assert csp["style-src"] == ["'self'"], csp
        assert csp["default-src"] == ["'none'"], csp
        assert csp["frame-ancestors"] == ["'none'"], csp
        assert "'unsafe-inline'" not in str(csp) and "'unsafe-eval'" not in str(csp), csp
        # Script may talk to this origin only; S3's signed links are images and media.
        assert csp["connect-src"] == ["'self'"], csp
        s3 = platform.state()["urls"]["s3"]
        s3_origin = f"{urlsplit(s3).scheme}://{urlsplit(s3).netloc}"
        assert s3_origin in csp["img-src"] and s3_origin in csp["media-src"], csp
        assert resp.headers["referrer-policy"] == "no-referrer"

    # In the browser: code slipped into the page does not run.
    page = sign_in(watch, platform)
    watch.allow(
        r"^(Executing inline (script|event handler)|Applying inline style) violates the "
        r"following Content Security Policy directive"
    )
    watch.allow_violation(r"^(script-src|style-src)")
    page.evaluate("""() => {
      const s = document.createElement('script');
      s.textContent = 'window.__injected = true';
      document.body.append(s);
      const img = document.createElement('img');
      img.setAttribute('onerror', 'window.__injected = true');
      img.src = 'data:,not-an-image';
      document.body.append(img);
      const p = document.createElement('p');
      p.setAttribute('style', 'color: red');
      p.id = 'styled';
      p.textContent = 'styled';
      document.body.append(p);
    }""")
    wait_for(lambda: len(watch.csp_violations()) >= 3, timeout=10, what="three CSP violations")
    assert page.evaluate("window.__injected") is None
    assert page.evaluate("getComputedStyle(document.getElementById('styled')).color") != (
        "rgb(255, 0, 0)"
    )
    directives = {v["directive"] for v in watch.csp_violations()}
    assert {"script-src-elem", "script-src-attr", "style-src-attr"} <= directives, directives


class InlineCode(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"<{tag} {n}>" for n in names if n == "style" or n.startswith("on")]


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    parser = InlineCode()
    parser.feed(INDEX.read_text())
    assert parser.found == []


# --- deleting from the UI -------------------------------------------------------------------------
@pytest.mark.timeout(900)  # a training and a video first, on a machine others share
def test_a_finished_job_and_a_profile_are_deleted_from_the_ui(
    platform: RunningPlatform, watch: Watch
) -> None:
    files: list[Any] = [("images", (n, d)) for n, d in face_photos(4)]
    resp = platform.post(
        "/api/train", files=files, data={"name": "To delete", "options": '{"steps": 5}'}
    )
    assert resp.status_code == 202, resp.text
    profile_id = resp.json()["jobId"]
    assert platform.wait_state(profile_id, {"completed", "failed"}, 300)["state"] == "completed"
    resp = platform.post(
        "/api/generate",
        json={"profileId": profile_id, "mode": "direct", "narration": "Soon gone."},
    )
    assert resp.status_code == 202, resp.text
    video_id = resp.json()["jobId"]
    assert platform.wait_state(video_id, {"completed", "failed"}, 480)["state"] == "completed"

    page = sign_in(watch, platform)
    dialogs: list[str] = []
    answer = {"accept": False}

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        if answer["accept"]:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    video_row = job_row(page, video_id)
    delete_video = video_row.get_by_role("button", name="Delete Video")
    expect(job_row(page, profile_id).locator("button.delete")).to_be_visible()  # finished

    # Asked first; "no" sends nothing.
    delete_video.click()
    assert len(dialogs) == 1 and "Video" in dialogs[0], dialogs
    expect(video_row).to_have_count(1)
    assert not [r for r in watch.requests if r.method == "DELETE"]

    answer["accept"] = True
    with page.expect_response(f"**/api/jobs/{video_id}") as deleted:
        delete_video.click()
    assert deleted.value.request.method == "DELETE" and deleted.value.status == 204
    assert deleted.value.request.all_headers().get(CSRF_HEADER) == "1"
    expect(video_row).to_have_count(0)
    assert platform.get(f"/api/status/{video_id}").status_code == 404
    watch.shot("job-deleted")

    # The profile, with its training job (deleting a profile deletes the jobs made with it).
    profile = page.locator(f'.profile[data-profile-id="{profile_id}"]')
    with page.expect_response(f"**/api/profiles/{profile_id}") as deleted:
        profile.get_by_role("button", name="Delete profile To delete").click()
    assert "To delete" in dialogs[-1] and "for good" in dialogs[-1], dialogs
    assert deleted.value.request.method == "DELETE" and deleted.value.status == 204
    assert deleted.value.request.all_headers().get(CSRF_HEADER) == "1"
    expect(profile).to_have_count(0)
    expect(page.locator(f'#gen-profile option[value="{profile_id}"]')).to_have_count(0)
    expect(job_row(page, profile_id)).to_have_count(0)
    assert platform.get(f"/api/profiles/{profile_id}").status_code == 404
    watch.shot("profile-deleted")
