"""`/dashboard` through the Flask app: sign-in by magic link and by the operator token,
who may open which artist's pages, and each page's forms calling the real use cases on
the real database (CSRF tokens included, as a browser sends them)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.adapters.db import transaction
from shared.adapters.models import Artist, Booking, Leave, Service, SigninLink
from shared.tasks import SEND_SIGNIN_LINK
from shared.usecases import signin
from tests import support
from tests.factories import World, make_world
from tests.fakes.clock import FakeClock
from tests.fakes.queue import RecordingQueue

PARIS = ZoneInfo("Europe/Paris")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# A Monday, 08:00 in Paris: the booking below is on Wednesday of the same week.
NOW = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def app(make_app: Callable[..., Flask], clock: FakeClock, queue: RecordingQueue) -> Flask:
    return make_app(clock=clock, queue=queue)


def csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    match = CSRF.search(page.get_data(as_text=True))
    assert match is not None
    return match.group(1)


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None, *, form: str) -> Any:
    """POST `data` as the form on page `form` would (with its CSRF token)."""
    return client.post(path, data={"csrf_token": csrf(client, form), **(data or {})})


def book(app: Flask, world: World, start: datetime) -> str:
    """A CONFIRMED booking (a zero deposit confirms at once), made through the API."""
    with transaction(app.extensions["inkflow"].resources.sessions) as session:
        service = session.get(Service, uuid.UUID(world.service_id))
        assert service is not None
        service.deposit_amount = service.deposit_amount * 0
    answer = app.test_client().post(
        "/api/bookings/create",
        json=world.booking(start),
        headers={"Authorization": f"Bearer {support.ADMIN_TOKEN}"},
    )
    assert answer.status_code == 201, answer.json
    assert answer.json is not None
    return str(answer.json["booking"]["id"])


def artist_email(sessions: Any, world: World) -> str:
    with transaction(sessions) as session:
        artist = session.get(Artist, uuid.UUID(world.artist_id))
        assert artist is not None
        return artist.email


def sign_in_artist(client: FlaskClient, queue: RecordingQueue, email: str) -> None:
    queue.clear()
    sent = post(client, "/dashboard/signin", {"email": email}, form="/dashboard/signin")
    assert sent.status_code == 200
    (link_id,) = queue.args_of(SEND_SIGNIN_LINK)
    token = signin.sign(support.WEB_SECRET_KEY, uuid.UUID(link_id))
    opened = post(client, f"/dashboard/signin/{token}", form=f"/dashboard/signin/{token}")
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/dashboard"


def sign_in_operator(client: FlaskClient) -> None:
    done = post(
        client,
        "/dashboard/signin/operator",
        {"token": support.ADMIN_TOKEN},
        form="/dashboard/signin",
    )
    assert done.status_code == 303


def status_of(sessions: Any, booking_id: str) -> str:
    with transaction(sessions) as session:
        booking = session.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        return booking.status


# --------------------------------------------------------------------------- sign-in


def test_the_same_answer_for_any_address(client: FlaskClient, sessions: Any, queue) -> None:
    world = make_world(sessions)
    email = artist_email(sessions, world)
    known = post(client, "/dashboard/signin", {"email": email}, form="/dashboard/signin")
    unknown = post(
        client, "/dashboard/signin", {"email": "nobody@example.com"}, form="/dashboard/signin"
    )
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True).replace(email, "X") == unknown.get_data(
        as_text=True
    ).replace("nobody@example.com", "X")
    assert len(queue.args_of(SEND_SIGNIN_LINK)) == 1  # one link, for the artist only


def test_a_magic_link_signs_the_artist_in_once(
    client: FlaskClient, sessions: Any, queue: RecordingQueue
) -> None:
    world = make_world(sessions)
    sign_in_artist(client, queue, artist_email(sessions, world))
    home = client.get("/dashboard")
    assert home.status_code == 303
    assert home.headers["Location"] == f"/dashboard/artists/{world.artist_id}"
    assert client.get(home.headers["Location"]).status_code == 200
    # The link is used up: a second visitor gets nothing from it.
    with transaction(sessions) as session:
        link = session.scalars(select(SigninLink)).one()
        token = signin.sign(support.WEB_SECRET_KEY, link.id)
    other = client.application.test_client()
    again = post(other, f"/dashboard/signin/{token}", form=f"/dashboard/signin/{token}")
    assert again.status_code == 400
    assert "does not work" in again.get_data(as_text=True)
    assert other.get("/dashboard").status_code == 303  # to the sign-in page
    assert other.get("/dashboard").headers["Location"] == "/dashboard/signin"


def test_opening_a_link_uses_nothing_up(client: FlaskClient, sessions: Any, queue) -> None:
    """A mail scanner that fetches the link (GET) leaves it working for the artist."""
    world = make_world(sessions)
    post(
        client,
        "/dashboard/signin",
        {"email": artist_email(sessions, world)},
        form="/dashboard/signin",
    )
    (link_id,) = queue.args_of(SEND_SIGNIN_LINK)
    token = signin.sign(support.WEB_SECRET_KEY, uuid.UUID(link_id))
    for _ in range(3):
        assert client.get(f"/dashboard/signin/{token}").status_code == 200
    assert post(client, f"/dashboard/signin/{token}", form="/dashboard/signin").status_code == 303


def test_expired_and_tampered_links_are_refused(
    client: FlaskClient, sessions: Any, queue, clock: FakeClock
) -> None:
    world = make_world(sessions)
    post(
        client,
        "/dashboard/signin",
        {"email": artist_email(sessions, world)},
        form="/dashboard/signin",
    )
    (link_id,) = queue.args_of(SEND_SIGNIN_LINK)
    token = signin.sign(support.WEB_SECRET_KEY, uuid.UUID(link_id))
    tampered = signin.sign(support.WEB_SECRET_KEY, uuid.UUID(int=uuid.UUID(link_id).int ^ 1))
    forged = signin.sign("another-secret-key-of-32-bytes-or-more", uuid.UUID(link_id))
    for bad in (tampered, forged, token[:-2]):
        refused = post(client, f"/dashboard/signin/{bad}", form="/dashboard/signin")
        assert refused.status_code == 400
    clock.advance(minutes=15)
    assert post(client, f"/dashboard/signin/{token}", form="/dashboard/signin").status_code == 400
    assert client.get("/dashboard").status_code == 303


def test_forms_need_their_csrf_token(client: FlaskClient, sessions: Any, queue) -> None:
    world = make_world(sessions)
    refused = client.post("/dashboard/signin", data={"email": artist_email(sessions, world)})
    assert refused.status_code == 400
    assert queue.args_of(SEND_SIGNIN_LINK) == []
    assert (
        client.post("/dashboard/signin/operator", data={"token": support.ADMIN_TOKEN}).status_code
        == 400
    )


def test_the_operator_signs_in_with_the_token(client: FlaskClient, sessions: Any) -> None:
    first, second = make_world(sessions), make_world(sessions)
    wrong = post(client, "/dashboard/signin/operator", {"token": "nope"}, form="/dashboard/signin")
    assert wrong.status_code == 401
    assert client.get("/dashboard").status_code == 303
    sign_in_operator(client)
    picker = client.get("/dashboard").get_data(as_text=True)
    for world in (first, second):
        assert f"/dashboard/artists/{world.artist_id}" in picker
        assert client.get(f"/dashboard/artists/{world.artist_id}").status_code == 200


def test_rotating_the_operator_token_ends_operator_sessions(
    make_app: Callable[..., Flask], sessions: Any
) -> None:
    world = make_world(sessions)
    before = make_app().test_client()
    sign_in_operator(before)
    cookie = before.get_cookie("inkflow_session")
    assert cookie is not None
    rotated = make_app(admin_api_token="a-new-operator-token-" + "n" * 32).test_client()
    rotated.set_cookie("inkflow_session", cookie.value)
    assert rotated.get(f"/dashboard/artists/{world.artist_id}").status_code == 303


def test_sign_out(client: FlaskClient) -> None:
    sign_in_operator(client)
    assert post(client, "/dashboard/signout", form="/dashboard").status_code == 303
    assert client.get("/dashboard").headers["Location"] == "/dashboard/signin"


# --------------------------------------------------------------------------- access


def test_an_artist_session_cannot_act_on_another_artists_booking(
    app: Flask, client: FlaskClient, sessions: Any, queue: RecordingQueue, clock: FakeClock
) -> None:
    mine, theirs = make_world(sessions), make_world(sessions)
    their_booking = book(app, theirs, datetime(2026, 5, 6, 11, tzinfo=PARIS))
    sign_in_artist(client, queue, artist_email(sessions, mine))
    clock.advance(days=3)  # after its start: completing it would be allowed to its artist
    assert client.get(f"/dashboard/artists/{theirs.artist_id}").status_code == 403
    own_week = f"/dashboard/artists/{mine.artist_id}"
    for action in ("complete", "no-show", "cancel"):
        # Through its own artist's path, naming the other's booking: the lifecycle's guard.
        sneaky = post(client, f"{own_week}/bookings/{their_booking}/{action}", form=own_week)
        assert sneaky.status_code == 403, action
        direct = post(
            client,
            f"/dashboard/artists/{theirs.artist_id}/bookings/{their_booking}/{action}",
            form=own_week,
        )
        assert direct.status_code == 403, action
    assert status_of(sessions, their_booking) == "CONFIRMED"
    for page in ("hours", "leaves", "services", "policy", "payments", "calendar"):
        assert client.get(f"/dashboard/artists/{theirs.artist_id}/{page}").status_code == 403


def test_pages_need_a_session(client: FlaskClient, sessions: Any) -> None:
    world = make_world(sessions)
    for page in ("", "/hours", "/leaves", "/services", "/policy", "/payments", "/calendar"):
        answer = client.get(f"/dashboard/artists/{world.artist_id}{page}")
        assert answer.status_code == 303
        assert answer.headers["Location"] == "/dashboard/signin"


# --------------------------------------------------------------------------- the week


def test_the_week_shows_bookings_and_their_actions(
    app: Flask, client: FlaskClient, sessions: Any, queue: RecordingQueue, clock: FakeClock
) -> None:
    world = make_world(sessions)
    booking = book(app, world, datetime(2026, 5, 6, 11, tzinfo=PARIS))
    sign_in_artist(client, queue, artist_email(sessions, world))
    week = f"/dashboard/artists/{world.artist_id}"
    page = client.get(week).get_data(as_text=True)
    assert "Week of 4 May 2026" in page
    assert f'id="booking-{booking}"' in page
    assert "11:00–12:00" in page  # in the artist's zone
    # Other weeks: the next one is empty, the previous week link goes back.
    assert f'id="booking-{booking}"' not in client.get(f"{week}?week=2026-05-11").get_data(
        as_text=True
    )
    assert f'id="booking-{booking}"' in client.get(f"{week}?week=2026-05-10").get_data(as_text=True)

    early = post(client, f"{week}/bookings/{booking}/complete", form=week)
    assert early.status_code == 409
    assert "POLICY_VIOLATION (NOT_STARTED)" in early.get_data(as_text=True)
    clock.advance(days=3)
    done = post(client, f"{week}/bookings/{booking}/complete", {"week": "2026-05-04"}, form=week)
    assert done.status_code == 303
    assert done.headers["Location"] == f"{week}?week=2026-05-04"
    assert "marked completed" in client.get(done.headers["Location"]).get_data(as_text=True)
    assert status_of(sessions, booking) == "COMPLETED"
    again = post(client, f"{week}/bookings/{booking}/cancel", {"refund": "NONE"}, form=week)
    assert again.status_code == 409
    assert "INVALID_STATE" in again.get_data(as_text=True)


def test_cancel_with_or_without_refund(
    app: Flask, client: FlaskClient, sessions: Any, queue: RecordingQueue
) -> None:
    world = make_world(sessions)
    first = book(app, world, datetime(2026, 5, 6, 11, tzinfo=PARIS))
    second = book(app, world, datetime(2026, 5, 7, 11, tzinfo=PARIS))
    sign_in_operator(client)
    week = f"/dashboard/artists/{world.artist_id}"
    kept = post(client, f"{week}/bookings/{first}/cancel", {"refund": "NONE"}, form=week)
    assert kept.status_code == 303
    assert "deposit is kept" in client.get(kept.headers["Location"]).get_data(as_text=True)
    refunded = post(client, f"{week}/bookings/{second}/cancel", {"refund": "FULL"}, form=week)
    assert "refunded in full" in client.get(refunded.headers["Location"]).get_data(as_text=True)
    with transaction(sessions) as session:
        for booking_id in (first, second):
            booking = session.get(Booking, uuid.UUID(booking_id))
            assert booking is not None
            assert (booking.status, booking.cancelled_by) == ("CANCELLED", "OPERATOR")


# --------------------------------------------------------------------------- settings pages


def test_a_leave_over_a_booking_shows_the_conflict(
    app: Flask, client: FlaskClient, sessions: Any, queue: RecordingQueue
) -> None:
    world = make_world(sessions)
    booking = book(app, world, datetime(2026, 5, 6, 11, tzinfo=PARIS))
    sign_in_artist(client, queue, artist_email(sessions, world))
    leaves = f"/dashboard/artists/{world.artist_id}/leaves"
    form = {"start": "2026-05-06T09:00", "end": "2026-05-06T18:00", "reason": "Convention"}
    answer = post(client, leaves, form, form=leaves)
    assert answer.status_code == 201
    page = answer.get_data(as_text=True)
    assert "overlaps 1 booking" in page
    assert f"#booking-{booking}" in page
    assert status_of(sessions, booking) == "CONFIRMED"
    # Delete it, and add it again cancelling what it covers.
    with transaction(sessions) as session:
        leave = session.scalars(select(Leave)).one()
        assert leave.start_time == datetime(2026, 5, 6, 7, tzinfo=UTC)  # 09:00 in Paris
    gone = post(client, f"{leaves}/{leave.id}/delete", form=leaves)
    assert gone.status_code == 303
    again = post(client, leaves, {**form, "cancelConflicting": "on"}, form=leaves)
    assert again.status_code == 201
    assert "are cancelled" in again.get_data(as_text=True)
    assert status_of(sessions, booking) == "CANCELLED"
    bad = post(
        client, leaves, {"start": "2026-05-06T18:00", "end": "2026-05-06T09:00"}, form=leaves
    )
    assert bad.status_code == 400
    assert 'id="endTime-error"' in bad.get_data(as_text=True)


def test_working_hours_editor(client: FlaskClient, sessions: Any, queue) -> None:
    world = make_world(sessions)
    sign_in_artist(client, queue, artist_email(sessions, world))
    hours = f"/dashboard/artists/{world.artist_id}/hours"
    page = client.get(hours).get_data(as_text=True)
    assert 'value="10:00"' in page
    assert 'value="18:00"' in page
    saved = post(
        client,
        hours,
        {"d0s0-start": "09:00", "d0s0-end": "12:00", "d0s1-start": "14:00", "d0s1-end": "24:00"},
        form=hours,
    )
    assert saved.status_code == 303
    with transaction(sessions) as session:
        from shared.usecases import catalog

        rows = catalog.list_working_hours(session, world.artist_id)
        assert [(r.day_of_week, r.start_minute, r.end_minute) for r in rows] == [
            (0, 540, 720),
            (0, 840, 1440),
        ]
    wrong = post(client, hours, {"d2s0-start": "18:00", "d2s0-end": "10:00"}, form=hours)
    assert wrong.status_code == 400
    assert "Wednesday, endTime: must be after startTime" in wrong.get_data(as_text=True)


def test_services_and_policy(client: FlaskClient, sessions: Any, queue) -> None:
    world = make_world(sessions)
    sign_in_artist(client, queue, artist_email(sessions, world))
    services = f"/dashboard/artists/{world.artist_id}/services"
    fields = {
        "name": "Flash",
        "durationMin": "90",
        "price": "120.00",
        "depositAmount": "30",
        "currency": "EUR",
    }
    assert post(client, services, fields, form=services).status_code == 303
    too_much = post(client, services, {**fields, "depositAmount": "500"}, form=services)
    assert too_much.status_code == 400
    assert "field-error" in too_much.get_data(as_text=True)
    with transaction(sessions) as session:
        flash = session.scalars(select(Service).where(Service.name == "Flash")).one()
    edited = post(client, f"{services}/{flash.id}", {**fields, "price": "150.00"}, form=services)
    assert edited.status_code == 303  # "active" unticked: deactivated
    removed = post(client, f"{services}/{world.service_id}/remove", form=services)
    assert removed.status_code == 303
    with transaction(sessions) as session:
        saved = session.get(Service, flash.id)
        assert saved is not None
        assert (str(saved.price), saved.active) == ("150.000", False)
        assert session.get(Service, uuid.UUID(world.service_id)) is None  # never booked

    policy = f"/dashboard/artists/{world.artist_id}/policy"
    values = {
        "bufferMin": "15", "minNoticeMin": "60", "maxAdvanceDays": "90",
        "refundWindowHours": "", "rescheduleNoticeHours": "24", "maxReschedules": "2",
        "reminderHours": "24", "noShowLimit": "2",
    }  # fmt: skip
    assert post(client, policy, values, form=policy).status_code == 303
    with transaction(sessions) as session:
        artist = session.get(Artist, uuid.UUID(world.artist_id))
        assert artist is not None
        assert (artist.buffer_min, artist.refund_window_hours, artist.no_show_limit) == (
            15,
            None,
            2,
        )
    wrong = post(client, policy, {**values, "bufferMin": "-1"}, form=policy)
    assert wrong.status_code == 400
    assert 'id="bufferMin-error"' in wrong.get_data(as_text=True)


def test_calendar_link_and_rotation(client: FlaskClient, sessions: Any, queue) -> None:
    world = make_world(sessions)
    sign_in_artist(client, queue, artist_email(sessions, world))
    calendar = f"/dashboard/artists/{world.artist_id}/calendar"
    feed = re.compile(r'value="(http://[^"]+\.ics)"')
    before = feed.search(client.get(calendar).get_data(as_text=True))
    assert before is not None
    assert post(client, f"{calendar}/rotate", form=calendar).status_code == 303
    after = feed.search(client.get(calendar).get_data(as_text=True))
    assert after is not None
    assert after.group(1) != before.group(1)


def test_stripe_onboarding_and_dashboard_links(client: FlaskClient, sessions: Any, queue) -> None:
    world = make_world(sessions, stripe_account_id=None, charges_enabled=False)
    sign_in_artist(client, queue, artist_email(sessions, world))
    payments = f"/dashboard/artists/{world.artist_id}/payments"
    page = client.get(payments).get_data(as_text=True)
    assert "none yet" in page
    assert "Set up payments with Stripe" in page
    no_account = post(client, f"{payments}/dashboard", form=payments)
    assert no_account.status_code == 422
    assert "STRIPE_NOT_CONFIGURED" in no_account.get_data(as_text=True)
    started = post(client, f"{payments}/onboarding", form=payments)
    assert started.status_code == 303
    assert started.headers["Location"].startswith("http")
    page = client.get(payments).get_data(as_text=True)
    assert "acct_" in page
    assert "Continue Stripe onboarding" in page
