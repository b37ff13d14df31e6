"""The web UI in a real browser against the real platform, signed in with the one-time
link: train a profile, make a video (also from a portrait of one's own), cancel, see
the server's errors next to the fields, survive a dropped WebSocket. Screenshots of
each step land in test-artifacts/ui/<test>/."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, Route, WebSocket, WebSocketRoute, expect

from tests.media_fixtures import face_photos, voice_clip
from tests.support import RunningPlatform, wait_for
from tests.ui.conftest import Watch, as_file, sign_in

MIME = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
TRAIN_SUBMIT = "#train-form button[type=submit]"
GENERATE_SUBMIT = "#generate-form button[type=submit]"
GENERATE_STEPS = ["script", "speech", "stage", "animate", "finish"]

# Records, from the DOM itself, every value a job's progress bar takes and every
# step its row shows (a MutationObserver, so nothing is missed between polls).
SAMPLER = """() => {
  window.__samples = [];
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const row = m.target.closest && m.target.closest('li.job');
      if (!row) continue;
      const sample = {job: row.dataset.jobId, state: row.dataset.state};
      if (m.attributeName === 'value') sample.progress = Number(m.target.getAttribute('value'));
      else if (m.target === row) sample.step = row.dataset.step;
      else continue;
      window.__samples.push(sample);
    }
  }).observe(document.getElementById('jobs'),
             {subtree: true, attributes: true, attributeFilter: ['value', 'data-step']});
}"""


# Every fetch the page makes, recorded in the page at the moment it is called. The UI
# calls fetch synchronously inside its submit handlers, so right after a click or a
# requestSubmit() this record is complete: "nothing was sent" needs no waiting.
FETCH_LOG = """(() => {
  window.__fetches = [];
  const original = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === 'string' ? input : input.url;
    const method = ((init && init.method) || 'GET').toUpperCase();
    window.__fetches.push({method, url: String(url)});
    return original.apply(this, arguments);
  };
})();"""


def fetched_posts(page: Page, path: str) -> int:
    """POSTs to `path` the page has started so far (its own record, not the network's)."""
    return int(
        page.evaluate(
            """(path) => window.__fetches.filter(
                 (f) => f.method === 'POST' && f.url.split('?')[0].endsWith(path)).length""",
            path,
        )
    )


def settled(page: Page, form: str) -> None:
    """Wait until `form` has no submission in flight (the UI marks it aria-busy)."""
    expect(page.locator(form)).not_to_have_attribute("aria-busy", "true")


def open_ui(w: Watch, platform: RunningPlatform) -> Page:
    page = w.page
    page.add_init_script(FETCH_LOG)
    sign_in(w, platform)
    expect(page.locator("#live")).to_have_attribute("data-live", "open")
    expect(page.locator('#status .pill[data-component="gateway"]')).to_have_attribute(
        "data-status", "ok"
    )
    page.evaluate(SAMPLER)
    return page


def samples(page: Page, job_id: str) -> list[dict[str, Any]]:
    return [s for s in page.evaluate("window.__samples") if s["job"] == job_id]


def job_row(page: Page, job_id: str) -> Locator:
    return page.locator(f'li.job[data-job-id="{job_id}"]')


def fill_train(
    page: Page,
    name: str,
    steps: int,
    photos: list[dict[str, Any]] | None = None,
    voice: bool = True,
) -> None:
    files = photos or [as_file(n, d, MIME[n.rsplit(".", 1)[1]]) for n, d in face_photos(4)]
    page.set_input_files("#photos", files)
    if voice:
        page.set_input_files("#voice", as_file("voice.wav", voice_clip(150.0), "audio/wav"))
        page.fill("#voice-text", "Hello from orbit")
    page.fill("#profile-name", name)
    page.click("#train-advanced summary")
    expect(page.locator("#train-advanced")).to_have_attribute("open", "")
    page.fill("#train-advanced input[name=steps]", str(steps))
    page.fill("#train-advanced input[name=rank]", "4")


def submit_train(page: Page) -> str:
    with page.expect_response("**/api/train") as info:
        page.click(TRAIN_SUBMIT)
    assert info.value.status == 202, info.value.text()
    return str(info.value.json()["jobId"])


def generate_capability(platform: RunningPlatform) -> dict[str, Any]:
    fns = platform.get("/api/capabilities").json()["functions"]
    return dict(fns.get("generate", {}).get("capabilities", {}).get("generate", {}))


def ensure_profile(platform: RunningPlatform) -> dict[str, Any]:
    """A trained profile (one made by an earlier test, or a quick one made here)."""
    profiles = platform.get("/api/profiles").json()["profiles"]
    if profiles:
        return dict(profiles[0])
    files: list[Any] = [("images", (n, d)) for n, d in face_photos(4)]
    resp = platform.post(
        "/api/train", files=files, data={"name": "Quick", "options": json.dumps({"steps": 5})}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["jobId"]
    assert platform.wait_state(job_id, {"completed", "failed"}, timeout=180)["state"] == "completed"
    return dict(platform.get(f"/api/profiles/{job_id}").json())


def hold(page: Page, pattern: str) -> list[Route]:
    """Hold requests matching `pattern` until the test lets them go."""
    held: list[Route] = []
    page.route(pattern, lambda route: held.append(route))
    return held


def submit_insistently(page: Page, form: str, button: str) -> None:
    """Submit, then try again while the first request is still in flight."""
    page.click(button)
    expect(page.locator(button)).to_be_disabled()
    page.click(button, force=True)  # a disabled button: must do nothing
    page.evaluate(f"document.querySelector('{form}').requestSubmit()")  # Enter, in effect


# --- 1. train -------------------------------------------------------------------------------------
def test_training_a_profile_shows_live_progress_and_the_profile(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = open_ui(watch, platform)
    fill_train(page, "Eileen", steps=20)
    thumbs = page.locator("#thumbs li img")
    expect(thumbs).to_have_count(4)
    wait_for(
        lambda: page.evaluate(
            "[...document.querySelectorAll('#thumbs img')].every(i => i.naturalWidth > 0)"
        ),
        timeout=10,
        what="the thumbnails to render",
    )
    expect(page.locator("#voice-preview")).to_be_visible()
    assert page.evaluate("document.querySelector('#voice-preview').src").startswith("blob:")
    watch.shot("filled")

    job_id = submit_train(page)
    row = job_row(page, job_id)
    expect(row).to_have_attribute("data-state", "running")
    expect(row).to_have_attribute("data-step", "train", timeout=90_000)
    watch.shot("training")
    expect(row).to_have_attribute("data-state", "completed", timeout=120_000)
    watch.shot("completed")

    seen = [s for s in samples(page, job_id) if "progress" in s]
    progress = [s["progress"] for s in seen]
    before_end = {s["progress"] for s in seen if s["state"] != "completed"}
    assert len(before_end) >= 3, f"progress values seen before completion: {sorted(before_end)}"
    assert progress == sorted(progress), f"the progress bar went backwards: {progress}"
    assert progress[-1] == 100, progress
    assert len(watch.posts("/api/train")) == 1
    # Fed by the WebSocket, not by polling: the list was loaded once, the job's times
    # looked up once (and its result once more if the last event lacked it).
    assert len(watch.gets("/api/jobs")) == 1, watch.gets("/api/jobs")
    assert len(watch.gets(f"/api/status/{job_id}")) <= 2, watch.gets(f"/api/status/{job_id}")

    # The loss curve of the finished job, as a chart.
    points = row.locator("svg.loss-chart polyline").get_attribute("points") or ""
    assert len(points.split()) == 20, points
    # The profile, with its portrait and working LoRA downloads.
    profile = page.locator(f'.profile[data-profile-id="{job_id}"]')
    expect(profile.locator(".profile-name")).to_have_text("Eileen")
    expect(profile).to_contain_text("tiny")
    expect(profile.locator(".downloads a")).to_have_count(3)
    wait_for(
        lambda: profile.locator(".thumb img").evaluate("i => i.complete && i.naturalWidth > 0"),
        timeout=10,
        what="the profile's portrait",
    )
    links = {a.inner_text(): a.get_attribute("href") for a in profile.locator(".downloads a").all()}
    assert {"LoRA (diffusers)", "LoRA (kohya)"} <= set(links), links
    for label, href in links.items():
        assert href and httpx.get(href, timeout=30).status_code == 200, label
    job_links = row.locator(".downloads a").all()
    assert {a.inner_text() for a in job_links} == {"LoRA (diffusers)", "LoRA (kohya)"}
    for a in job_links:
        assert httpx.get(a.get_attribute("href") or "", timeout=30).status_code == 200
    # The new profile can be chosen for a video.
    expect(page.locator(f'#gen-profile option[value="{job_id}"]')).to_have_count(1)
    watch.shot("profile")


def test_the_status_bar_shows_every_component(platform: RunningPlatform, watch: Watch) -> None:
    page = open_ui(watch, platform)
    health = platform.get("/health").json()["components"]
    functions = health.pop("functions")
    assert {"redis", "database", "s3", "triton"} <= set(health), health
    assert {"status", "ws-relay", "train", "generate"} <= set(functions), functions
    for name, component in [*health.items(), *functions.items()]:
        pill = page.locator(f'#status .pill[data-component="{name}"]')
        expect(pill).to_have_attribute("data-status", component["status"])
    # A component that is down says so in words, not only in colour.
    watch.allow(r"Failed to load resource: the server responded with a status of 503")
    page.route("**/health", lambda route: route.fulfill(status=503, json={
        "status": "down", "failing": ["redis"],
        "components": {"gateway": {"status": "ok"},
                       "redis": {"status": "down", "error": "Connection refused"}},
    }))  # fmt: skip
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator('#status .pill[data-component="redis"]')).to_have_text("redis: down")
    expect(page.locator('#status .pill[data-component="gateway"]')).to_have_text("gateway")
    watch.shot("redis-down")


# --- 2. generate ----------------------------------------------------------------------------------
def test_generating_a_video_plays_it_inline(platform: RunningPlatform, watch: Watch) -> None:
    profile = ensure_profile(platform)
    page = open_ui(watch, platform)
    caps = generate_capability(platform)
    if caps.get("available") is False:
        expect(page.locator("#generate-unavailable")).to_have_text(caps.get("reason", ""))
        expect(page.locator(GENERATE_SUBMIT)).to_be_disabled()
        watch.shot("unavailable")
    assert caps.get("available") is not False, f"generate is unavailable: {caps.get('reason')}"

    page.select_option("#gen-profile", profile["id"])
    page.check('input[name="mode"][value="direct"]')
    page.fill("#gen-narration", "Hello! This is a short test of MySpinBot.")
    page.fill("#gen-stage", "a sunny office")
    watch.shot("filled")
    with page.expect_response("**/api/generate") as info:
        page.click(GENERATE_SUBMIT)
    assert info.value.status == 202, info.value.text()
    job_id = str(info.value.json()["jobId"])
    row = job_row(page, job_id)
    expect(row).to_have_attribute("data-state", "running", timeout=30_000)
    watch.shot("running")
    expect(row).to_have_attribute("data-state", "completed", timeout=240_000)
    steps = [s["step"] for s in samples(page, job_id) if s.get("step")]
    seen = list(dict.fromkeys(steps))
    assert set(seen) <= set(GENERATE_STEPS), seen
    assert seen == sorted(seen, key=GENERATE_STEPS.index), f"steps out of order: {seen}"
    assert len(seen) >= 3, f"too few steps shown: {seen}"
    assert row.locator(".steps li.done").count() == len(GENERATE_STEPS)

    video = row.locator("video")
    expect(video).to_have_count(1)
    wait_for(
        lambda: video.evaluate("v => v.readyState >= 2 && v.duration > 0"),
        timeout=30,
        what="the video to load",
    )
    assert video.evaluate("v => v.error") is None
    expect(row.locator(".job-result")).not_to_contain_text("null")
    mp4 = row.locator(".downloads a", has_text="Download MP4").get_attribute("href")
    resp = httpx.get(mp4 or "", timeout=30)
    assert resp.status_code == 200 and resp.content[4:8] == b"ftyp"
    watch.shot("video")


def pick_upload_portrait(page: Page, profile: dict[str, Any], narration: str) -> None:
    page.select_option("#gen-profile", profile["id"])
    page.check('input[name="mode"][value="direct"]')
    page.fill("#gen-narration", narration)
    expect(page.locator("#gen-portrait")).to_be_hidden()
    page.check('input[name="portrait"][value="upload"]')
    expect(page.locator("#gen-portrait")).to_be_visible()


def test_a_video_can_use_an_uploaded_portrait(platform: RunningPlatform, watch: Watch) -> None:
    profile = ensure_profile(platform)
    caps = generate_capability(platform)
    assert caps.get("available") is not False, f"generate is unavailable: {caps.get('reason')}"
    assert caps["portraits"]["upload"].get("available") is not False, caps["portraits"]
    page = open_ui(watch, platform)
    default = page.locator(f'input[name="portrait"][value="{caps["defaultPortrait"]}"]')
    expect(default).to_be_checked()

    pick_upload_portrait(page, profile, "Hello! This video uses a portrait of my own.")
    name, photo = face_photos(2)[1]
    page.set_input_files("#gen-portrait", as_file(name, photo, MIME[name.rsplit(".", 1)[1]]))
    preview = page.locator("#gen-portrait-preview")
    expect(preview).to_be_visible()
    assert (preview.get_attribute("src") or "").startswith("blob:")
    wait_for(
        lambda: preview.evaluate("i => i.complete && i.naturalWidth > 0"),
        timeout=10,
        what="the portrait preview",
    )
    watch.shot("filled")

    # The image goes first, the job only once it is stored; one of each however often
    # the button is pressed meanwhile.
    held = hold(page, "**/api/portraits")
    submit_insistently(page, "#generate-form", GENERATE_SUBMIT)
    assert fetched_posts(page, "/api/portraits") == 1
    assert fetched_posts(page, "/api/generate") == 0
    pump_until(page, lambda: held, what="the portrait upload to be held")
    with (
        page.expect_response("**/api/portraits") as uploaded,
        page.expect_response("**/api/generate") as info,
    ):
        held[0].continue_()
    page.unroute("**/api/portraits")
    assert uploaded.value.status == 201, uploaded.value.text()
    assert info.value.status == 202, info.value.text()
    portrait_id = uploaded.value.json()["portraitId"]
    sent = json.loads(info.value.request.post_data or "{}")
    assert sent["options"] == {"portrait": "upload", "portraitImage": portrait_id}, sent
    assert len(watch.posts("/api/portraits")) == 1 and len(watch.posts("/api/generate")) == 1

    job_id = str(info.value.json()["jobId"])
    row = job_row(page, job_id)
    expect(row).to_have_attribute("data-state", "completed", timeout=240_000)
    assert platform.status(job_id)["result"]["portrait"] == "upload"
    expect(row.locator(".job-result")).to_contain_text("portrait: upload")
    video = row.locator("video")
    wait_for(
        lambda: video.evaluate("v => v.readyState >= 2 && v.duration > 0"),
        timeout=30,
        what="the video to load",
    )
    assert video.evaluate("v => v.error") is None
    watch.shot("video")


# --- 3. cancel (after a reload) -------------------------------------------------------------------
def test_a_running_job_can_be_cancelled_after_a_reload(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = open_ui(watch, platform)
    fill_train(page, "Long", steps=5000, voice=False)
    job_id = submit_train(page)
    row = job_row(page, job_id)
    expect(row).to_have_attribute("data-state", "running")

    # A reload rebuilds the list from GET /api/jobs and follows the job again.
    page.reload()
    expect(page.locator("#live")).to_have_attribute("data-live", "open")
    expect(row).to_have_attribute("data-state", "running")
    expect(row).to_have_attribute("data-step", "train", timeout=90_000)
    expect(row.locator("progress")).not_to_have_attribute("value", "0")
    watch.shot("running-after-reload")

    row.get_by_role("button", name="Cancel Training").click()  # says which job it stops
    expect(row).to_have_attribute("data-state", "cancelled", timeout=60_000)
    expect(row.locator(".state")).to_have_text("cancelled")
    expect(row.locator("button.cancel")).to_be_hidden()
    assert len(watch.posts(f"/api/jobs/{job_id}/cancel")) == 1
    assert platform.status(job_id)["state"] == "cancelled"
    watch.shot("cancelled")


# --- 4. errors next to the fields; nothing submitted twice ----------------------------------------
def test_a_non_image_upload_shows_the_servers_error_at_the_photos(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = open_ui(watch, platform)
    watch.allow(r"Failed to load resource: the server responded with a status of 415")
    name, photo = face_photos(1)[0]
    fill_train(
        page,
        "Bad upload",
        steps=5,
        voice=False,
        photos=[
            as_file("readme.txt", b"just text", "text/plain"),  # refused here, never sent
            as_file(name, photo, "image/jpeg"),
            as_file("notes.jpg", b"not really a photo", "image/jpeg"),  # only the server can tell
        ],
    )
    readme = page.locator('#thumbs li[data-name="readme.txt"]')
    expect(readme).to_have_class("invalid")
    expect(readme.locator(".file-error")).to_contain_text("not be uploaded")
    watch.shot("picked")

    held = hold(page, "**/api/train")
    with page.expect_response("**/api/train") as info:
        submit_insistently(page, "#train-form", TRAIN_SUBMIT)
        assert fetched_posts(page, "/api/train") == 1
        pump_until(page, lambda: held, what="the upload to be held")
        held[0].continue_()
    page.unroute("**/api/train")
    assert info.value.status == 415
    message = info.value.json()["error"]
    assert "notes.jpg" in message  # so readme.txt was not sent: it came first
    expect(page.locator('#train-form .field-error[data-error-for="images"]')).to_have_text(message)
    expect(page.locator('#thumbs li[data-name="notes.jpg"] .file-error')).to_have_text(message)
    expect(page.locator(TRAIN_SUBMIT)).to_be_enabled()
    assert len(watch.posts("/api/train")) == 1
    watch.shot("error")


def test_an_empty_narration_shows_the_servers_error_at_the_narration(
    platform: RunningPlatform, watch: Watch
) -> None:
    profile = ensure_profile(platform)
    caps = generate_capability(platform)
    assert caps.get("available") is not False, f"generate is unavailable: {caps.get('reason')}"
    page = open_ui(watch, platform)
    watch.allow(r"Failed to load resource: the server responded with a status of 422")
    page.select_option("#gen-profile", profile["id"])
    page.check('input[name="mode"][value="direct"]')
    page.fill("#gen-narration", "   ")

    held = hold(page, "**/api/generate")
    with page.expect_response("**/api/generate") as info:
        submit_insistently(page, "#generate-form", GENERATE_SUBMIT)
        assert fetched_posts(page, "/api/generate") == 1
        pump_until(page, lambda: held, what="the request to be held")
        held[0].continue_()
    page.unroute("**/api/generate")
    assert info.value.status == 422
    message = info.value.json()["error"]
    assert "narration" in message
    expect(page.locator('#generate-form .field-error[data-error-for="narration"]')).to_have_text(
        message
    )
    expect(page.locator("#gen-narration")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(GENERATE_SUBMIT)).to_be_enabled()
    assert len(watch.posts("/api/generate")) == 1
    watch.shot("error")


def test_a_non_image_portrait_shows_the_servers_error_at_the_file_input(
    platform: RunningPlatform, watch: Watch
) -> None:
    profile = ensure_profile(platform)
    page = open_ui(watch, platform)
    watch.allow(r"Failed to load resource: the server responded with a status of 415")
    pick_upload_portrait(page, profile, "Hello")
    error = page.locator('#generate-form .field-error[data-error-for="image"]')

    # Nothing picked: said here, nothing sent.
    page.click(GENERATE_SUBMIT)
    expect(error).to_have_text("Pick an image for the portrait.")
    assert not watch.posts("/api/portraits")

    page.set_input_files("#gen-portrait", as_file("notes.txt", b"just text", "text/plain"))
    expect(page.locator("#gen-portrait-preview")).to_be_hidden()  # it could not be shown
    watch.shot("picked")
    with page.expect_response("**/api/portraits") as info:
        page.click(GENERATE_SUBMIT)
    assert info.value.status == 415
    message = info.value.json()["error"]
    assert "notes.txt" in message
    expect(error).to_have_text(message)
    expect(page.locator("#gen-portrait")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(GENERATE_SUBMIT)).to_be_enabled()
    settled(page, "#generate-form")  # the submission is over: it sent all it was going to
    assert fetched_posts(page, "/api/generate") == 0 and not watch.posts("/api/generate")
    assert fetched_posts(page, "/api/portraits") == 1
    watch.shot("error")


def test_unavailable_modes_and_portraits_are_disabled_with_the_servers_reason(
    platform: RunningPlatform, watch: Watch
) -> None:
    """This platform has no LLM: guided mode is unavailable, the rest is available."""
    ensure_profile(platform)
    caps = generate_capability(platform)
    assert caps.get("available") is not False, f"generate is unavailable: {caps.get('reason')}"
    page = open_ui(watch, platform)
    expect(page.locator("#gen-profile option")).not_to_have_count(0)
    expect(page.locator("#generate-unavailable")).to_be_hidden()
    expect(page.locator(GENERATE_SUBMIT)).to_be_enabled()
    unavailable = []
    for group in ("mode", "portrait"):
        entries = caps[f"{group}s"]
        assert isinstance(entries, dict) and entries, caps
        for value, entry in entries.items():
            radio = page.locator(f'input[name="{group}"][value="{value}"]')
            expect(radio).to_have_count(1)  # every choice the server knows is offered
            if entry.get("available") is False:
                unavailable.append(value)
                expect(radio).to_be_disabled()
                reason = page.locator(f'[data-reason-for="{value}"]')
                expect(reason).to_have_text(entry.get("reason") or "Not available on this server.")
            else:
                expect(radio).to_be_enabled()
    assert "guided" in unavailable, caps  # the disabled branch was exercised
    watch.shot("capabilities")


def test_generate_unavailable_is_shown_and_nothing_can_be_submitted(
    platform: RunningPlatform, watch: Watch
) -> None:
    """The server's capabilities say generate is unavailable (the real reply, with
    generate switched off): the reason shows, and no way of submitting sends anything."""
    reason = "Video generation is switched off on this server for maintenance."
    ensure_profile(platform)

    def switched_off(route: Route) -> None:
        reply = route.fetch()
        caps = reply.json()
        caps["functions"]["generate"]["capabilities"]["generate"].update(
            available=False, reason=reason
        )
        route.fulfill(response=reply, json=caps)

    watch.page.route("**/api/capabilities", switched_off)
    page = open_ui(watch, platform)
    expect(page.locator("#gen-profile option")).not_to_have_count(0)
    banner = page.locator("#generate-unavailable")
    expect(banner).to_be_visible()
    expect(banner).to_have_text(reason)
    expect(page.locator(GENERATE_SUBMIT)).to_be_disabled()
    expect(page.locator(GENERATE_SUBMIT)).to_have_attribute("title", reason)
    page.check('input[name="mode"][value="direct"]')
    page.fill("#gen-narration", "Hello")
    page.click(GENERATE_SUBMIT, force=True)
    page.evaluate("document.querySelector('#generate-form').requestSubmit()")
    settled(page, "#generate-form")
    assert fetched_posts(page, "/api/generate") == 0 and not watch.posts("/api/generate")
    watch.shot("unavailable")


# --- 5. the WebSocket drops mid-job ---------------------------------------------------------------
def test_the_ui_reconnects_and_catches_up_when_the_gateway_restarts(
    platform: RunningPlatform, watch: Watch
) -> None:
    page = open_ui(watch, platform)
    # While the gateway is down the browser itself logs the refused connections.
    watch.allow(r"WebSocket connection to '.*/ws' failed")
    watch.allow(r"Failed to load resource: net::ERR_CONNECTION_REFUSED")
    sent: list[dict[str, Any]] = []

    def on_ws(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", on_ws)
    page.evaluate("window.__notReloaded = true")
    fill_train(page, "Reconnect", steps=60, voice=False)
    job_id = submit_train(page)
    row = job_row(page, job_id)
    expect(row).to_have_attribute("data-step", "train", timeout=90_000)
    watch.shot("before-kill")

    gateway = next(c for c in platform.state()["children"] if c["name"] == "gateway")
    os.kill(gateway["pid"], signal.SIGKILL)
    expect(page.locator("#live")).not_to_have_attribute("data-live", "open", timeout=10_000)
    watch.shot("disconnected")
    expect(page.locator("#live")).to_have_attribute("data-live", "open", timeout=60_000)
    watch.shot("reconnected")
    expect(row).to_have_attribute("data-state", "completed", timeout=120_000)
    watch.shot("completed")

    assert page.evaluate("window.__notReloaded") is True
    resumes = [m for m in sent if m.get("jobId") == job_id and m.get("lastEventId")]
    assert resumes, f"no resubscribe with lastEventId: {sent}"
    progress = [s["progress"] for s in samples(page, job_id) if "progress" in s]
    assert progress == sorted(progress) and progress[-1] == 100, progress
    expect(row.locator("svg.loss-chart")).to_have_count(1)
    expect(page.locator(f'.profile[data-profile-id="{job_id}"]')).to_have_count(1)


def pump_until(page: Page, cond: Any, what: str, timeout_ms: int = 10_000) -> None:
    """wait_for for Playwright's own events (route handlers run only inside its calls)."""
    for _ in range(timeout_ms // 50):
        if cond():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_connection_that_goes_silent_is_replaced(platform: RunningPlatform, watch: Watch) -> None:
    """A WebSocket can die without a close (a laptop's sleep, a proxy's idle cut): the UI
    pings it, and when nothing comes back it connects again. The page's time runs on a
    fake clock, advanced a ping interval (20 s) at a time."""
    connections: list[dict[str, Any]] = []

    def relay(ws: WebSocketRoute) -> None:
        link: dict[str, Any] = {"silent": False, "pongs": 0}
        connections.append(link)
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if link["silent"]:
                return
            link["pongs"] += json.loads(message).get("type") == "pong"
            ws.send(message)

        ws.on_message(lambda m: None if link["silent"] else server.send(m))
        server.on_message(from_server)

    watch.page.clock.install()
    watch.page.route_web_socket("**/ws", relay)
    page = open_ui(watch, platform)
    first = connections[0]
    for pongs in (1, 2):  # answered pings keep the connection
        page.clock.run_for(20_000)
        pump_until(page, lambda n=pongs: first["pongs"] == n, what=f"pong {pongs}")
    assert len(connections) == 1

    first["silent"] = True
    page.clock.run_for(20_000)  # a ping, unanswered
    page.clock.run_for(20_000)  # silent too long: dropped, a reconnect is scheduled
    expect(page.locator("#live")).not_to_have_attribute("data-live", "open")
    page.clock.run_for(1_000)  # the first backoff
    pump_until(page, lambda: len(connections) == 2, what="a new connection")
    expect(page.locator("#live")).to_have_attribute("data-live", "open")
