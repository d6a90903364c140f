"""Browser tests: the web pages in a real headless Chromium (the OS's package, driven by
Playwright; Playwright's own browser download is never used), against the system as it
runs — gunicorn, a Celery worker subprocess, PostgreSQL, Redis, a Stripe emulator of
this module's own that delivers signed webhooks to that gunicorn.

Every page is checked with axe-core (vendored: tests/browser/axe.min.js, 4.14.1, MPL-2.0)
for serious or critical violations, and photographed at phone (390x844) and desktop
(1280x800) widths into var/screenshots/. Any console error or uncaught exception on a
page fails its test: a script or style the Content-Security-Policy blocks shows there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools import commands
from devtools.processes import Child
from devtools.stripe_emulator import StripeEmulator
from devtools.stripe_emulator.delivery import Endpoint
from tests import support
from tests.e2e.conftest import LiveServer, launch
from tests.fakes.smtp_sink import SmtpSink

CHROMIUM = Path(os.environ.get("INKFLOW_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = (
    "the browser tests need Chromium from the OS packages: "
    "apt-get update && apt-get install -y chromium chromium-driver "
    "(.ci/run installs them; INKFLOW_CHROMIUM names another binary)"
)
AXE = Path(__file__).with_name("axe.min.js")
SCREENSHOTS = support.ROOT / "var" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# axe impacts that fail a page (minor and moderate ones are reported, not fatal).
FATAL_IMPACTS = ("serious", "critical")
WAIT_MS = 20_000


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        # LocalNetworkAccessChecks off: a page the test fulfils itself (to add the CSP,
        # `_enforce_csp`) has no address space, so Chromium would take it for a public
        # site calling the loopback emulator; served directly, both are loopback.
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-features=LocalNetworkAccessChecks"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def own_queue() -> Iterator[str]:
    with support.own_celery_queue("inkflow-test-browser") as name:
        yield name


@pytest.fixture(scope="module")
def page_emulator() -> Iterator[StripeEmulator]:
    """A Stripe emulator of this module's own: its webhooks go to this module's server."""
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def mail() -> Iterator[SmtpSink]:
    """Where the site's worker sends its e-mails (the dashboard's sign-in links)."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def site(
    database_url: str,
    page_emulator: StripeEmulator,
    own_queue: str,
    log_dir: Path,
    mail: SmtpSink,
) -> Iterator[LiveServer]:
    env = support.base_env(
        database_url,
        SMTP_URL=mail.url,
        STRIPE_API_BASE=page_emulator.url,
        STRIPE_PUBLISHABLE_KEY="pk_test_inkflow_browser",
        STRIPE_MAX_RETRIES="0",
        STRIPE_TIMEOUT_SECONDS="5",
        CELERY_QUEUE=own_queue,
        INBOX_SWEEP_SECONDS="2",
    )
    server = launch(env, log_dir, workers=2)
    env = {**env, "PUBLIC_BASE_URL": server.url}
    args = ["worker", "-Q", own_queue, "--concurrency=1", "--pool=prefork"]
    args += ["--without-mingle", "--without-gossip", "--loglevel=INFO"]
    worker: Child = support.start_child("celery-worker", commands.celery(*args), env, log_dir)
    try:
        worker.wait_ready(lambda: worker.printed("ready."), timeout=90)
        page_emulator.delivery.configure(
            Endpoint(f"{server.url}/api/webhooks/stripe", support.WEBHOOK_SECRET, ("*",)),
            None,
            None,
        )
        yield server
    finally:
        page_emulator.delivery.configure(None, None, None)
        worker.stop(timeout=15)
        server.stop()


@dataclass
class Audit:
    """axe's findings and the screenshots, per page, for the run's report."""

    pages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def write(self) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "axe-report.json").write_text(json.dumps(self.pages, indent=2) + "\n")


@pytest.fixture(scope="session")
def audit() -> Iterator[Audit]:
    found = Audit()
    yield found
    found.write()


class Browser:
    """One page in a fresh browser context, with the checks every test makes."""

    def __init__(self, context: Any, audit: Audit) -> None:
        self.context = context
        self.page = context.new_page()
        self.audit = audit
        self.problems: list[str] = []
        self.allowed: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.set_default_timeout(WAIT_MS)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            where = (message.location or {}).get("url", "")
            self.problems.append(f"console error: {message.text} ({where})")

    def check(self, name: str) -> list[dict[str, Any]]:
        """axe on the page as it is now, then a screenshot at each width; fails on a
        serious or critical violation."""
        page = self.page
        started = time.perf_counter()
        violations: list[dict[str, Any]] = page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ["violations"]});
                return r.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
                }));
            }"""
        )
        axe_ms = (time.perf_counter() - started) * 1000
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shots = []
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(size)
            path = SCREENSHOTS / f"{name}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            shots.append(path.name)
        page.set_viewport_size(DESKTOP)
        # At a phone's width nothing may be wider than the screen (no sideways scrolling).
        page.set_viewport_size(PHONE)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.set_viewport_size(DESKTOP)
        self.audit.pages[name] = {
            "url": page.url,
            "violations": violations,
            "axe_ms": round(axe_ms),
            "screenshots": shots,
            "phone_scroll_width": overflow,
        }
        fatal = [v for v in violations if v["impact"] in FATAL_IMPACTS]
        assert not fatal, f"{name}: axe found serious/critical violations: {fatal}"
        assert overflow <= PHONE["width"], f"{name}: {overflow}px wide on a 390px phone"
        return violations

    def allow(self, text: str) -> None:
        """A console error the test expects (Chromium logs every HTTP error answer to a
        request as one: a declined card's 402, a refused page's 403)."""
        self.allowed.append(text)

    def assert_clean(self) -> None:
        left = [p for p in self.problems if not any(a in p for a in self.allowed)]
        assert not left, "\n".join(left)


# The Content-Security-Policy the API sends (services/api/security_headers.py, the
# hardening work): added here to our HTML answers that come without one, so a page that
# needs an inline script or style, or a source it does not list, fails its test now.
PLANNED_CSP = (
    "default-src 'self'; script-src 'self' https://js.stripe.com; style-src 'self'; "
    "connect-src 'self' https://api.stripe.com {stripe}; form-action 'self' {stripe}; "
    "frame-src https://js.stripe.com; img-src 'self' data:"
)


def _enforce_csp(stripe_origin: str) -> Any:
    policy = PLANNED_CSP.format(stripe=stripe_origin)

    def handle(route: Any) -> None:
        answer = route.fetch(max_redirects=0)  # the page itself follows redirects
        headers = dict(answer.headers)
        is_html = headers.get("content-type", "").startswith("text/html")
        if is_html and "content-security-policy" not in {k.lower() for k in headers}:
            headers["content-security-policy"] = policy
        route.fulfill(response=answer, headers=headers)

    return handle


@pytest.fixture
def browser(
    playwright_browser: Any, audit: Audit, site: LiveServer, page_emulator: StripeEmulator
) -> Iterator[Browser]:
    context = playwright_browser.new_context(viewport=DESKTOP, locale="en-GB")
    context.route(f"{site.url}/**", _enforce_csp(page_emulator.url.rstrip("/")))
    # axe in every page, from the test's side: no <script> the site's CSP would have to
    # allow (an init script is not subject to the page's CSP).
    context.add_init_script(path=str(AXE))
    b = Browser(context, audit)
    try:
        yield b
        b.assert_clean()
    finally:
        # A page may still be polling when the test ends: drop the CSP handler first, so
        # a request in flight is not fulfilled into a closed context (an error that would
        # surface in a later test's teardown).
        context.unroute_all(behavior="ignoreErrors")
        context.close()
