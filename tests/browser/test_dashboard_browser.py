"""The dashboard in headless Chromium, against gunicorn and a Celery worker that mails the
sign-in link to an SMTP sink (fixtures: tests/browser/conftest.py).

- An artist asks for a magic link, reads it in the e-mail, signs in, sees a booking in
  the week view and marks it completed.
- A leave over a booking shows the conflict.
- The operator signs in with the token and picks an artist.
- axe-core on every dashboard page (no serious or critical violation), screenshots at
  phone and desktop widths.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import Artist, Booking
from tests import support
from tests.browser.conftest import Browser
from tests.e2e.conftest import LiveServer
from tests.factories import World, make_world
from tests.fakes.smtp_sink import SmtpSink

pytestmark = pytest.mark.timeout(120)

PARIS = ZoneInfo("Europe/Paris")
LINK = re.compile(r"(http://\S+/dashboard/signin/\S+)")


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    return make_world(sessions, timezone="Europe/Paris", deposit="0.00")  # confirms at once


def book(site: LiveServer, world: World, days: int) -> tuple[str, datetime]:
    """A CONFIRMED booking `days` from now at 11:00 Paris time, made through the API."""
    day = datetime.now(PARIS).date() + timedelta(days=days)
    start = datetime(day.year, day.month, day.day, 11, tzinfo=PARIS)
    made = site.post(
        "/api/bookings/create",
        json=world.booking(start),
        headers={"Authorization": f"Bearer {support.ADMIN_TOKEN}"},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["booking"]["id"]), start


def started_an_hour_ago(sessions: sessionmaker[Session], booking_id: str) -> datetime:
    """Move the booking into the past (no booking can be made there): it has taken place,
    so it may be marked completed."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with transaction(sessions) as db:
        db.execute(
            update(Booking)
            .where(Booking.id == uuid.UUID(booking_id))
            .values(start_time=start, end_time=start + timedelta(minutes=30))
        )
    return start


def artist_email(sessions: sessionmaker[Session], world: World) -> str:
    with transaction(sessions) as db:
        artist = db.get(Artist, uuid.UUID(world.artist_id))
        assert artist is not None
        return artist.email


def sign_in_by_magic_link(
    b: Browser, site: LiveServer, mail: SmtpSink, email: str, *, shots: bool
) -> None:
    page = b.page
    page.goto(f"{site.url}/dashboard/signin")
    if shots:
        b.check("dashboard-1-signin")
    before = len(mail.messages)
    page.get_by_label("Your e-mail address").fill(email)
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    page.get_by_role("heading", name="Check your e-mail").wait_for()
    if shots:
        b.check("dashboard-2-link-sent")
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        # The artist's other e-mails (a booking confirmed) arrive in the same sink.
        for message in mail.messages[before:]:
            if message.to == email and message.subject == "Your inkflow sign-in link":
                found = LINK.search(message.text or "")
        time.sleep(0.1)
    assert found is not None, "no sign-in link e-mailed within 30 s"
    page.goto(found.group(1))
    if shots:
        b.check("dashboard-3-open-link")
    page.get_by_role("button", name="Continue to my dashboard").click()
    page.wait_for_url(re.compile(r"/dashboard/artists/[0-9a-f-]{36}"))


def test_an_artist_signs_in_by_magic_link_and_completes_a_booking(
    browser: Browser, site: LiveServer, mail: SmtpSink, world: World, sessions: Any
) -> None:
    booking_id, _ = book(site, world, days=2)
    start = started_an_hour_ago(sessions, booking_id)
    b, page = browser, browser.page
    sign_in_by_magic_link(b, site, mail, artist_email(sessions, world), shots=True)
    week = f"{site.url}/dashboard/artists/{world.artist_id}"
    page.goto(f"{week}?week={start.astimezone(PARIS).date().isoformat()}")
    card = page.locator(f"#booking-{booking_id}")
    card.get_by_text("confirmed").wait_for()
    b.check("dashboard-4-week")
    # With the keyboard: focus the button and press Enter.
    card.get_by_role("button", name=re.compile("^Mark completed")).focus()
    page.keyboard.press("Enter")
    page.get_by_text("The booking is marked completed.").wait_for()
    page.locator(f"#booking-{booking_id}").get_by_text("completed", exact=True).wait_for()
    b.check("dashboard-5-week-after-complete")
    with transaction(sessions) as db:
        booking = db.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        assert booking.status == "COMPLETED"

    # Every other page of the dashboard, as this artist.
    for path, heading, name in (
        ("hours", "Working hours", "dashboard-6-hours"),
        ("services", "Services", "dashboard-7-services"),
        ("policy", "Booking rules and policy", "dashboard-8-policy"),
        ("payments", "Payments with Stripe", "dashboard-9-payments"),
        ("calendar", "Your calendar link", "dashboard-10-calendar"),
    ):
        page.goto(f"{week}/{path}")
        page.get_by_role("heading", name=heading, exact=True).wait_for()
        b.check(name)


def test_a_leave_over_a_booking_shows_the_conflict(
    browser: Browser, site: LiveServer, mail: SmtpSink, world: World, sessions: Any
) -> None:
    booking_id, start = book(site, world, days=3)
    b, page = browser, browser.page
    sign_in_by_magic_link(b, site, mail, artist_email(sessions, world), shots=False)
    page.goto(f"{site.url}/dashboard/artists/{world.artist_id}/leaves")
    b.check("dashboard-11-leaves")
    day = start.date().isoformat()
    page.get_by_label("From").fill(f"{day}T09:00")
    page.get_by_label("Until").fill(f"{day}T18:00")
    page.get_by_label("Reason").fill("Convention")
    page.get_by_role("button", name="Add the leave").click()
    page.get_by_text("it overlaps 1 booking").wait_for()
    assert page.locator(f'a[href$="#booking-{booking_id}"]').count() == 1
    b.check("dashboard-12-leave-conflict")


def test_the_operator_signs_in_with_the_token(
    browser: Browser, site: LiveServer, world: World
) -> None:
    b, page = browser, browser.page
    page.goto(f"{site.url}/dashboard/signin")
    page.get_by_label("Operator token").fill("not the token")
    page.get_by_role("button", name="Sign in as the operator").click()
    page.get_by_text("That is not the operator token.").wait_for()
    b.allow("401")  # Chromium logs the refused sign-in's status as a console error
    page.get_by_label("Operator token").fill(support.ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in as the operator").click()
    page.get_by_role("heading", name="Artists").wait_for()
    b.check("dashboard-13-operator-artists")
    page.locator(f'a[href="/dashboard/artists/{world.artist_id}"]').click()
    page.get_by_text("signed in as the operator").wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out.").wait_for()
