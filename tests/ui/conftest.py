"""Fixtures for the web UI tests: the real platform, Debian's Chromium driven by
Playwright, and a page that records console errors, Content-Security-Policy
violations and screenshots of each step; signing in with the one-time link."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    expect,
    sync_playwright,
)

from tests.support import FUNCTIONS, ROOT, RunningPlatform

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (`apt-get install chromium`)
ARTIFACTS = ROOT / "test-artifacts" / "ui"
SESSION_COOKIE = "myspinbot_session"

# Every Content-Security-Policy violation the page reports, in the page, from its
# first moment (the browser also logs each one to the console as an error).
CSP_LISTENER = """(() => {
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
    {directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample}));
})();"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`myspinbot up` with every function the UI talks to."""
    functions = [FUNCTIONS / name for name in ("status", "ws-relay", "train", "generate")]
    # A first start exports the tiny model for Triton (about 40 s); a busy machine
    # takes longer still.
    p = RunningPlatform(tmp_path_factory.mktemp("ui"), functions=functions).start(timeout=300)
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
        self.allowed_violations: list[re.Pattern[str]] = []
        self.requests: list[Request] = []
        self.shots_dir = shots_dir
        self.shots = 0
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda r: self.requests.append(r))
        page.add_init_script(CSP_LISTENER)

    def _console(self, msg: ConsoleMessage) -> None:
        line = f"{msg.text} ({msg.location.get('url')})"
        if msg.type == "error" and not any(p.search(line) for p in self.allowed):
            self.errors.append(f"console: {line}")

    def allow(self, pattern: str) -> None:
        """Console errors the test provokes on purpose (e.g. the gateway it kills); matched
        against "<message> (<url>)"."""
        self.allowed.append(re.compile(pattern))

    def posts(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.endswith(path)]

    def gets(self, path: str) -> list[str]:
        """The GET requests to `path` (query string aside)."""
        urls = (r.url for r in self.requests if r.method == "GET")
        return [u for u in urls if u.split("?", 1)[0].endswith(path)]

    def expected_violation(self, violation: dict[str, Any]) -> bool:
        """A violation the test provokes on purpose (allowed by its console message)."""
        return any(p.search(str(violation.get("directive"))) for p in self.allowed_violations)

    def allow_violation(self, directive: str) -> None:
        self.allowed_violations.append(re.compile(directive))

    def csp_violations(self) -> list[dict[str, Any]]:
        """What the page's Content-Security-Policy blocked since it was (re)loaded."""
        return list(self.page.evaluate("window.__cspViolations || []"))

    def shot(self, step: str) -> Path:
        self.shots += 1
        path = self.shots_dir / f"{self.shots:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def watch(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Watch]:
    """A fresh page with no session (tests sign in the way a person does, `sign_in`); at
    the end, no console error, uncaught exception or CSP violation may be left."""
    shots_dir = ARTIFACTS / request.node.name
    shots_dir.mkdir(parents=True, exist_ok=True)
    for old in shots_dir.glob("*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    w = Watch(page, shots_dir)
    yield w
    with contextlib.suppress(Exception):  # a screenshot must not hide the test's outcome
        w.shot("end")
    violations: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):  # a page that is gone has nothing more to say
        violations = [v for v in w.csp_violations() if not w.expected_violation(v)]
    context.close()
    assert not w.errors, "errors in the browser console:\n" + "\n".join(w.errors)
    assert not violations, f"Content-Security-Policy violations: {violations}"


def sign_in_link(platform: RunningPlatform) -> str:
    """A sign-in link made of the owner's API token. (The one-time link `up` prints works
    once per start; test_signin.py spends it. The page treats both alike: it takes the
    token out of the address bar and exchanges it with POST /api/session.)"""
    return f"{platform.url}/?token={platform.token}"


def sign_in(w: Watch, platform: RunningPlatform) -> Page:
    """Open a sign-in link; return once the page shows who is signed in."""
    page = w.page
    page.goto(sign_in_link(platform))
    expect(page.locator("#account")).to_be_visible()
    expect(page.locator("#app")).to_be_visible()
    return page


def as_file(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}
