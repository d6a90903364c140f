"""The client's web pages over Flask's test client (the browser tests drive the same
pages in Chromium): each step answers HTML on the server, forms need their CSRF token,
a booking page opens only for the browser that booked it or the signed e-mail link."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.adapters import booking_links
from shared.adapters.db import transaction
from shared.adapters.models import Booking, Client
from tests import support
from tests.factories import World, make_world

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SLOT = re.compile(r'name="start" id="slot-\d+" value="([^"]+)"')
DAY = re.compile(r"day=(\d{4}-\d{2}-\d{2})#time-heading")


@pytest.fixture
def world(sessions: Any) -> World:
    return make_world(sessions, timezone="America/New_York")


def open_day(http: FlaskClient, world: World, nth: int = 0) -> tuple[str, str, list[str]]:
    """The booking page on its first (or nth) free day: (html, that day, the free starts)."""
    page = http.get(f"/book/{world.artist_id}?service={world.service_id}")
    assert page.status_code == 200
    day = DAY.findall(page.get_data(as_text=True))[nth]
    page = http.get(f"/book/{world.artist_id}?service={world.service_id}&day={day}")
    html = page.get_data(as_text=True)
    return html, day, SLOT.findall(html)


def hold(http: FlaskClient, world: World, nth_day: int = 0, **changes: str) -> Any:
    html, day, starts = open_day(http, world, nth_day)
    form = {
        "csrf_token": CSRF.search(html)[1],  # type: ignore[index]
        "service": world.service_id,
        "day": day,
        "start": starts[-1],
        "name": "Robin Page",
        "email": "robin@example.com",
        **changes,
    }
    return http.post(f"/book/{world.artist_id}", data=form)


def booking_id_of(answer: Any) -> str:
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    return str(answer.headers["Location"].rsplit("/", 1)[-1])


def test_the_steps_answer_html_in_the_artists_time_zone(client: FlaskClient, world: World) -> None:
    first = client.get(f"/book/{world.artist_id}")
    assert first.status_code == 200
    assert first.mimetype == "text/html"
    text = first.get_data(as_text=True)
    assert "America/New_York" in text
    assert '<html lang="en">' in text
    assert 'href="#main"' in text  # the skip link
    html, day, starts = open_day(client, world)
    assert starts, "a working day has free slots"
    # The slots are the availability use case's, shown in the artist's local time.
    local = datetime.fromisoformat(starts[0]).astimezone(ZoneInfo("America/New_York"))
    assert local.date() == date.fromisoformat(day)
    assert f"{local:%H:%M}–" in html


def test_holding_a_slot_creates_the_client_and_opens_the_booking(
    client: FlaskClient, world: World, sessions: Any
) -> None:
    booking_id = booking_id_of(hold(client, world, email="New.Person@Example.com"))
    with transaction(sessions) as db:
        booking = db.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        assert booking.status == "PENDING_PAYMENT"
        owner = db.get(Client, booking.client_id)
        assert owner is not None
        assert owner.email == "new.person@example.com"
    page = client.get(f"/booking/{booking_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-pay="emulator"' in html
    assert "4000 0000 0000 0002" in html
    assert 'data-secret="pi_' in html  # the intent's client secret, read back from Stripe
    # The same e-mail again: the same client, not a second one.
    other = make_world(sessions)
    again = booking_id_of(hold(client, other, email="new.person@example.com", name="X"))
    with transaction(sessions) as db:
        second = db.get(Booking, uuid.UUID(again))
        assert second is not None
        assert str(second.client_id) == str(booking.client_id)


def test_a_form_without_its_csrf_token_is_refused(client: FlaskClient, world: World) -> None:
    answer = hold(client, world, csrf_token="forged")
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert "came from another site" in answer.get_data(as_text=True)


def test_bad_details_keep_what_was_typed(client: FlaskClient, world: World) -> None:
    answer = hold(client, world, email="not-an-address", name="Kept Name")
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert "Enter an e-mail address" in html
    assert 'value="Kept Name"' in html
    assert 'aria-invalid="true"' in html


def test_a_booking_page_opens_only_for_its_browser_or_its_signed_link(
    make_app: Callable[..., Flask], world: World
) -> None:
    app = make_app()
    booker = app.test_client()
    booking_id = booking_id_of(hold(booker, world))
    stranger = app.test_client()
    refused = stranger.get(f"/booking/{booking_id}")
    assert refused.status_code == 403
    assert refused.mimetype == "text/html"
    # No bearer token opens it, not even the operator's.
    operator = {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}
    assert stranger.get(f"/booking/{booking_id}", headers=operator).status_code == 403
    assert stranger.get(f"/booking/{booking_id}/status").status_code == 403
    # A link signed for another booking, or with another key, opens nothing.
    other = booking_links.sign(support.WEB_SECRET_KEY, uuid.uuid4())
    assert stranger.get(f"/booking/{booking_id}?t={other}").status_code == 403
    forged = booking_links.sign("another-key".ljust(40, "k"), uuid.UUID(booking_id))
    assert stranger.get(f"/booking/{booking_id}?t={forged}").status_code == 403
    # The e-mail's link opens it, and the page then drops the token from the address.
    settings = app.extensions["inkflow"].resources.settings
    link = booking_links.url(settings, uuid.UUID(booking_id))
    assert link is not None
    assert link.startswith(f"{settings.public_base_url}/booking/")
    opened = stranger.get(link.removeprefix(settings.public_base_url))
    assert opened.status_code == 303
    assert opened.headers["Location"] == f"/booking/{booking_id}"
    assert stranger.get(f"/booking/{booking_id}").status_code == 200
    status = stranger.get(f"/booking/{booking_id}/status").get_data(as_text=True)
    assert 'data-status="PENDING_PAYMENT"' in status


def test_in_development_without_web_secret_key_the_pages_say_so_and_the_api_runs(
    make_app: Callable[..., Flask], world: World
) -> None:
    # Production refuses to start without it (tests/unit/test_production_safety.py).
    app = make_app(web_secret_key=None, environment="development")
    http = app.test_client()
    page = http.get(f"/book/{world.artist_id}")
    assert page.status_code == 503
    assert "WEB_SECRET_KEY" in page.get_data(as_text=True)
    assert http.get("/healthz").status_code == 200
    assert booking_links.url(app.extensions["inkflow"].resources.settings, uuid.uuid4()) is None


def test_unknown_artist_is_an_html_404(client: FlaskClient) -> None:
    for path in (f"/book/{uuid.uuid4()}", "/book/not-a-uuid"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.mimetype == "text/html"


MOVE_DAY = re.compile(r"move_day=(\d{4}-\d{2}-\d{2})#move-times")
MOVE_SLOT = re.compile(r'name="start" id="move-\d+" value="([^"]+)"')


def test_reschedule_then_cancel_from_the_booking_page(client: FlaskClient, sessions: Any) -> None:
    # No deposit: the booking is CONFIRMED at once (the browser tests pay one).
    world = make_world(sessions, deposit="0.00", reschedule_notice_hours=1)
    # Not today's last slot: late in the day it is within the notice and cannot be moved.
    booking_id = booking_id_of(hold(client, world, nth_day=1))
    page = client.get(f"/booking/{booking_id}").get_data(as_text=True)
    assert 'data-status="CONFIRMED"' in page
    assert "You may move the booking once, at least 1 hour before it starts" in page
    day = MOVE_DAY.findall(page)[0]
    page = client.get(f"/booking/{booking_id}?move_day={day}").get_data(as_text=True)
    new_start = MOVE_SLOT.findall(page)[0]
    token = CSRF.search(page)[1]  # type: ignore[index]
    moved = client.post(
        f"/booking/{booking_id}/reschedule", data={"csrf_token": token, "start": new_start}
    )
    assert moved.status_code == 303
    page = client.get(f"/booking/{booking_id}").get_data(as_text=True)
    assert "Your booking has moved." in page
    with transaction(sessions) as db:
        row = db.get(Booking, uuid.UUID(booking_id))
        assert row is not None
        assert row.start_time == datetime.fromisoformat(new_start)
        assert row.reschedule_count == 1
    # Moved once: the policy allows no second move, and the page says why.
    assert "moved as many times as the artist allows" in page
    assert 'id="move-times"' not in page
    cancelled = client.post(f"/booking/{booking_id}/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303
    page = client.get(f"/booking/{booking_id}").get_data(as_text=True)
    assert "Your booking is cancelled." in page
    assert 'data-status="CANCELLED"' in page
    # Cancelled: cancelling again is refused by the lifecycle, shown on the page.
    again = client.post(f"/booking/{booking_id}/cancel", data={"csrf_token": token})
    assert again.status_code == 303
    assert "does not allow this" in client.get(f"/booking/{booking_id}").get_data(as_text=True)


def test_only_the_pages_open_a_session(app: Flask) -> None:
    """The JSON API and the webhook (the measured paths) never parse a session cookie."""
    from flask import session
    from flask.sessions import NullSession

    for path in ("/api/bookings/create", "/api/webhooks/stripe", "/healthz"):
        with app.test_request_context(path, headers={"Cookie": "inkflow_session=x"}):
            assert isinstance(session._get_current_object(), NullSession), path  # type: ignore[attr-defined]
    for path in ("/book/x", "/booking/x", "/dashboard/signin"):
        with app.test_request_context(path):
            assert not isinstance(session._get_current_object(), NullSession), path  # type: ignore[attr-defined]
