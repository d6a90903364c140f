"""The client's booking flow in headless Chromium, against gunicorn, a Celery worker and
the Stripe emulator delivering signed webhooks (fixtures: tests/browser/conftest.py).

- Book and pay with 4242 4242 4242 4242: the page turns CONFIRMED once the webhook is
  applied, without a reload by hand.
- The decline card 4000 0000 0000 0002: the page shows the card error, the booking
  stays PENDING_PAYMENT with its hold, and paying again with 4242 confirms it.
- Cancel within the artist's refund window: the page shows the refund.
- A slot booked with the keyboard alone (Tab, Space, Enter).
- axe-core on every page state, screenshots at phone and desktop widths.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import Booking
from tests.browser.conftest import WAIT_MS, Browser
from tests.e2e.conftest import LiveServer
from tests.factories import World, make_world

pytestmark = pytest.mark.timeout(120)

DECLINED = "4000 0000 0000 0002"
PAYS = "4242 4242 4242 4242"


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    # Cancelling up to 24 h before the start refunds the deposit; slots are days away.
    return make_world(
        sessions, timezone="Europe/Paris", refund_window_hours=24, min_notice_min=24 * 60
    )


def booking_status(sessions: sessionmaker[Session], booking_id: str) -> str:
    with transaction(sessions) as db:
        found = db.get(Booking, uuid.UUID(booking_id))
        assert found is not None
        return found.status


def choose_slot_and_details(b: Browser, site: LiveServer, world: World, *, shots: bool) -> str:
    """Service → day → time → details, with the mouse; returns the booking id."""
    page = b.page
    page.goto(f"{site.url}/book/{world.artist_id}")
    page.get_by_text("Europe/Paris", exact=False).first.wait_for()
    if shots:
        b.check("book-1-service")
    page.locator(".days a").nth(1).click()  # a day with free slots (tomorrow or later)
    page.locator("#time-heading").wait_for()
    if shots:
        b.check("book-2-day-and-time")
    page.locator(".choices.slots label").first.click()
    page.get_by_label("Name").fill("Robin Browser")
    page.get_by_label("E-mail").fill(f"robin-{uuid.uuid4().hex[:6]}@example.com")
    page.get_by_role("button", name="Hold this time and pay the deposit").click()
    page.wait_for_url(re.compile(r"/booking/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


def pay(b: Browser, card: str) -> None:
    page = b.page
    page.get_by_label("Card number").fill(card)
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()


def wait_status(b: Browser, status: str) -> None:
    b.page.locator(f'#booking-status [data-status="{status}"]').wait_for(timeout=WAIT_MS)


def test_book_and_pay_with_4242_shows_confirmed_after_the_webhook(
    browser: Browser, site: LiveServer, world: World, sessions: Any
) -> None:
    started = time.perf_counter()
    booking_id = choose_slot_and_details(browser, site, world, shots=True)
    wait_status(browser, "PENDING_PAYMENT")
    browser.check("booking-1-pay")
    pay(browser, PAYS)
    # The page polls; the worker applies payment_intent.succeeded; the page reloads.
    wait_status(browser, "CONFIRMED")
    assert booking_status(sessions, booking_id) == "CONFIRMED"
    browser.page.get_by_role("button", name="Cancel this booking").wait_for()
    browser.check("booking-2-confirmed")
    print(f"book and pay to CONFIRMED: {time.perf_counter() - started:.1f}s")


def test_a_declined_card_shows_the_error_and_keeps_the_hold(
    browser: Browser, site: LiveServer, world: World, sessions: Any
) -> None:
    booking_id = choose_slot_and_details(browser, site, world, shots=False)
    browser.allow("status of 402")
    pay(browser, DECLINED)
    error = browser.page.locator("#pay-error")
    error.wait_for(state="visible")
    assert "declined" in error.inner_text()
    assert "still held" in error.inner_text()
    browser.check("booking-3-declined")
    # The payment_failed webhook changes nothing of the hold: still payable.
    time.sleep(1.5)
    assert booking_status(sessions, booking_id) == "PENDING_PAYMENT"
    browser.page.reload()
    wait_status(browser, "PENDING_PAYMENT")
    pay(browser, PAYS)
    wait_status(browser, "CONFIRMED")


def test_cancel_within_the_refund_window_shows_the_refund(
    browser: Browser, site: LiveServer, world: World, sessions: Any
) -> None:
    booking_id = choose_slot_and_details(browser, site, world, shots=False)
    pay(browser, PAYS)
    wait_status(browser, "CONFIRMED")
    page = browser.page
    assert page.get_by_text("refunded in full").first.is_visible()
    page.get_by_role("button", name="Cancel this booking").click()
    wait_status(browser, "CANCELLED")
    notice = page.locator(".notice-ok")
    # Refunded inline by the API (or on its way, should Stripe be slow).
    assert re.search(r"(has been|is being) refunded", notice.inner_text())
    assert "50.00 EUR" in page.locator("[data-refund]").inner_text()
    assert booking_status(sessions, booking_id) == "CANCELLED"
    browser.check("booking-4-cancelled")


def tab_to(b: Browser, selector: str, limit: int = 60) -> None:
    """Press Tab until the focused element matches `selector` (keyboard only)."""
    for _ in range(limit):
        b.page.keyboard.press("Tab")
        if b.page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_a_slot_can_be_booked_with_the_keyboard_alone(
    browser: Browser, site: LiveServer, world: World
) -> None:
    page = browser.page
    page.goto(f"{site.url}/book/{world.artist_id}")
    # The skip link comes first and moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    # One service: it is chosen already; Tab to the second day with free times (which
    # day that is depends on the hour the test runs: the artist asks 24 h of notice) and
    # open it with Enter.
    href = page.locator(".days a").nth(1).get_attribute("href")
    assert href
    tab_to(browser, f'.days a[href="{href}"]')
    page.keyboard.press("Enter")
    page.locator("#time-heading").wait_for()
    tab_to(browser, "input[name=start]")
    page.keyboard.press("Space")
    assert page.evaluate("document.activeElement.checked")
    tab_to(browser, "#name")
    page.keyboard.type("Kim Keys")
    tab_to(browser, "#email")
    page.keyboard.type(f"kim-{uuid.uuid4().hex[:6]}@example.com")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/booking/[0-9a-f-]{36}$"))
    wait_status(browser, "PENDING_PAYMENT")
    tab_to(browser, "#card-number")
    page.keyboard.press("Enter")  # the 4242 card is filled in: Enter pays
    wait_status(browser, "CONFIRMED")
    # A visible focus indicator: the focused control has an outline.
    tab_to(browser, "button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_pages_of_errors_pass_axe(browser: Browser, site: LiveServer) -> None:
    browser.allow("status of 403")
    browser.page.goto(f"{site.url}/booking/{uuid.uuid4()}")
    assert browser.page.locator("h1").inner_text() == "Sorry"
    assert "confirmation email" in browser.page.locator("main").inner_text()
    browser.check("error-403")
    # The harness sees a CSP violation: an inline script is refused, as a console error.
    browser.page.evaluate(
        """() => {
            const s = document.createElement("script");
            s.textContent = "window.inlineRan = true";
            document.body.appendChild(s);
        }"""
    )
    browser.page.wait_for_timeout(200)
    assert browser.page.evaluate("window.inlineRan === undefined")
    refused = [p for p in browser.problems if "Content Security Policy" in p]
    assert refused, browser.problems
    browser.problems = [p for p in browser.problems if p not in refused]
