"""Fixtures for the web UI tests: the real platform, Debian's Chromium driven by
Playwright, and a page that records console errors and screenshots of each step."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from tests.support import FUNCTIONS, ROOT, RunningPlatform

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (`apt-get install chromium`)
ARTIFACTS = ROOT / "test-artifacts" / "ui"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`myspinbot up` with every function the UI talks to."""
    functions = [FUNCTIONS / name for name in ("status", "ws-relay", "train", "generate")]
    p = RunningPlatform(tmp_path_factory.mktemp("ui"), functions=functions).start()
    yield p
    assert p.stop() == 0, "myspinbot up did not exit cleanly"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/test does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Watch:
    """What a page did: console errors, uncaught exceptions, API requests; screenshots."""

    def __init__(self, page: Page, shots_dir: Path) -> None:
        self.page = page
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        self.requests: list[Request] = []
        self.shots_dir = shots_dir
        self.shots = 0
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda r: self.requests.append(r))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and not any(p.search(msg.text) for p in self.allowed):
            self.errors.append(f"console: {msg.text} ({msg.location.get('url')})")

    def allow(self, pattern: str) -> None:
        """Console errors the test provokes on purpose (e.g. the gateway it kills)."""
        self.allowed.append(re.compile(pattern))

    def posts(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.endswith(path)]

    def gets(self, path: str) -> list[str]:
        """The GET requests to `path` (query string aside)."""
        urls = (r.url for r in self.requests if r.method == "GET")
        return [u for u in urls if u.split("?", 1)[0].endswith(path)]

    def shot(self, step: str) -> Path:
        self.shots += 1
        path = self.shots_dir / f"{self.shots:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def watch(
    browser: Browser, request: pytest.FixtureRequest, platform: RunningPlatform
) -> Iterator[Watch]:
    """A fresh page, signed in as the owner; at the end, no console error or uncaught
    exception may be left."""
    shots_dir = ARTIFACTS / request.node.name
    shots_dir.mkdir(parents=True, exist_ok=True)
    for old in shots_dir.glob("*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    # Signed in as a browser is after the login link: the session cookie. The CSRF header
    # is added to every request here because this UI's fetches do not send it themselves.
    context.add_cookies(
        [{"name": "myspinbot_session", "value": platform.sign_in(), "url": platform.url}]
    )
    context.set_extra_http_headers({"X-MySpinBot-CSRF": "1"})
    page = context.new_page()
    page.set_default_timeout(20_000)
    w = Watch(page, shots_dir)
    yield w
    with contextlib.suppress(Exception):  # a screenshot must not hide the test's outcome
        w.shot("end")
    context.close()
    assert not w.errors, "errors in the browser console:\n" + "\n".join(w.errors)


def as_file(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}
