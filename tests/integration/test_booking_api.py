"""Booking creation through the Flask app: real PostgreSQL, real Redis, the Stripe
emulator over HTTP with the real SDK."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from shared.adapters.db import transaction
from shared.adapters.locks import slot_lock_key
from shared.adapters.models import Booking, BookingStatus
from shared.adapters.payments import StripeGateway
from shared.usecases.booking import lock_artist_schedule
from shared.usecases.effects import EffectRunner
from shared.usecases.holds import expire_holds
from tests.factories import make_world
from tests.fakes.clock import FakeClock
from tests.fakes.queue import RecordingQueue

PARIS = ZoneInfo("Europe/Paris")


def next_local(hour: int, days: int = 3) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)


def book(client, world, start: datetime, headers=None, **extra):
    body = {
        "clientId": world.client_id,
        "artistId": world.artist_id,
        "serviceId": world.service_id,
        "startTime": start.isoformat(),
        **extra,
    }
    return client.post("/api/bookings/create", json=body, headers=headers or {})


def test_create_booking_returns_hold_and_payment_intent(client, sessions, stripe_emulator):
    world = make_world(sessions)
    start = next_local(11)
    response = book(client, world, start)
    assert response.status_code == 201, response.json
    booking, intent = response.json["booking"], response.json["paymentIntent"]
    assert booking["status"] == "PENDING_PAYMENT"
    assert booking["depositAmount"] == "50.00"
    assert booking["currency"] == "eur"
    assert booking["startTime"] == start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert booking["paymentIntentId"] == intent["id"]
    assert intent["amount"] == 5000
    assert intent["currency"] == "eur"
    assert intent["clientSecret"].startswith(intent["id"])
    expires = datetime.fromisoformat(booking["expiresAt"].replace("Z", "+00:00"))
    created = datetime.fromisoformat(booking["createdAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=899) <= expires - created <= timedelta(seconds=901)

    [sent] = [
        r
        for r in stripe_emulator.requests_to("/v1/payment_intents", "POST")
        if r.params.get("metadata", {}).get("bookingId") == booking["id"]
    ]
    assert sent.params["amount"] == "5000"
    assert sent.params["currency"] == "eur"
    assert sent.params["automatic_payment_methods"] == {"enabled": "true"}
    assert sent.params["transfer_data"] == {"destination": world.stripe_account_id}
    assert sent.params["metadata"] == {
        "bookingId": booking["id"],
        "artistId": world.artist_id,
        "clientId": world.client_id,
        "serviceId": world.service_id,
    }
    assert "application_fee_amount" not in sent.params
    assert sent.idempotency_key == f"inkflow-deposit-{booking['id']}"

    fetched = client.get(f"/api/bookings/{booking['id']}")
    assert fetched.status_code == 200
    assert fetched.json["booking"] == booking


def test_platform_fee_and_zero_decimal_currency(make_app, sessions, stripe_emulator):
    app = make_app(platform_fee_bps=1000)
    world = make_world(sessions, currency="jpy", price="20000", deposit="5000")
    response = book(app.test_client(), world, next_local(12))
    assert response.status_code == 201, response.json
    assert response.json["booking"]["depositAmount"] == "5000"
    assert response.json["paymentIntent"]["amount"] == 5000
    [sent] = [
        r
        for r in stripe_emulator.requests_to("/v1/payment_intents", "POST")
        if r.params.get("metadata", {}).get("bookingId") == response.json["booking"]["id"]
    ]
    assert sent.params["application_fee_amount"] == "500"
    assert sent.params["currency"] == "jpy"


def test_same_slot_twice_is_refused(client, sessions):
    world = make_world(sessions)
    start = next_local(11)
    assert book(client, world, start).status_code == 201
    again = book(client, world, start)
    assert again.status_code == 409
    assert again.json["error"] == "SLOT_UNAVAILABLE"
    assert again.json["details"]["reason"] == "ALREADY_BOOKED"


def test_a_held_lock_answers_slot_taken(client, app, sessions):
    world = make_world(sessions)
    start = next_local(11)
    redis_client = app.extensions["inkflow"].resources.redis
    key = slot_lock_key(uuid.UUID(world.artist_id), start)
    redis_client.set(key, "someone-else", px=5000)
    try:
        response = book(client, world, start)
    finally:
        redis_client.delete(key)
    assert response.status_code == 409
    assert response.json["error"] == "SLOT_TAKEN"


@pytest.mark.parametrize(
    ("hour", "days", "reason", "artist"),
    [
        (8, 3, "OUTSIDE_WORKING_HOURS", {}),
        (18, 3, "OUTSIDE_WORKING_HOURS", {}),  # 18:00 is the end of the working day
        (11, -2, "IN_PAST", {}),
        (11, 3, "TOO_FAR", {"max_advance_days": 1}),
        (11, 3, "TOO_SOON", {"min_notice_min": 10 * 24 * 60}),
    ],
)
def test_rules_answer_slot_unavailable(client, sessions, hour, days, reason, artist):
    world = make_world(sessions, **artist)
    response = book(client, world, next_local(hour, days))
    assert response.status_code == 409
    assert response.json == {
        "error": "SLOT_UNAVAILABLE",
        "message": response.json["message"],
        "details": {"reason": reason},
    }


def test_leave_refuses_with_on_leave(client, sessions, admin_headers):
    world = make_world(sessions)
    start = next_local(11)
    client.post(
        f"/api/admin/artists/{world.artist_id}/leaves",
        json={"startTime": start.isoformat(), "endTime": (start + timedelta(hours=2)).isoformat()},
        headers=admin_headers,
    )
    response = book(client, world, start)
    assert response.json["details"]["reason"] == "ON_LEAVE"


def test_buffer_is_enforced(client, sessions):
    world = make_world(sessions, buffer_min=30)
    assert book(client, world, next_local(11)).status_code == 201
    response = book(client, world, next_local(12))  # back-to-back, inside the buffer
    assert response.status_code == 409
    assert response.json["details"]["reason"] == "ALREADY_BOOKED"


def test_stripe_not_configured_takes_no_hold(client, sessions):
    for kwargs in ({"stripe_account_id": None}, {"charges_enabled": False}):
        world = make_world(sessions, **kwargs)
        response = book(client, world, next_local(11))
        assert response.status_code == 422
        assert response.json["error"] == "STRIPE_NOT_CONFIGURED"
    with sessions() as session:
        assert session.scalars(select(Booking)).all() == []


def test_zero_deposit_confirms_at_once(client, sessions):
    world = make_world(sessions, deposit="0.00")
    response = book(client, world, next_local(11))
    assert response.status_code == 201
    assert response.json["paymentIntent"] is None
    assert response.json["booking"]["status"] == "CONFIRMED"


def test_stripe_failure_cancels_and_frees_the_slot(client, sessions, stripe_emulator):
    world = make_world(sessions)
    start = next_local(11)
    stripe_emulator.fail_next(n=1, status=500, path_prefix="/v1/payment_intents")
    failed = book(client, world, start)
    assert failed.status_code == 502
    assert failed.json["error"] == "PAYMENT_PROVIDER_ERROR"
    with sessions() as session:
        [row] = session.scalars(select(Booking)).all()
        assert row.status == BookingStatus.CANCELLED
        assert (row.cancelled_by, row.deposit_status) == ("SYSTEM", "UNPAID")
        assert row.cancelled_at is not None
    again = book(client, world, start)
    assert again.status_code == 201


def test_stripe_timeout_is_a_provider_error(client, sessions, stripe_emulator):
    world = make_world(sessions)
    stripe_emulator.delay_next(3.0, n=1, path_prefix="/v1/payment_intents", phase="before")
    response = book(client, world, next_local(11))
    assert response.status_code == 502
    assert response.json["error"] == "PAYMENT_PROVIDER_ERROR"


def test_idempotency_key_replays_the_first_answer(client, sessions):
    world = make_world(sessions)
    start = next_local(11)
    headers = {"Idempotency-Key": "key-123"}
    first = book(client, world, start, headers)
    second = book(client, world, start, headers)
    assert first.status_code == second.status_code == 201
    assert first.json == second.json
    other = book(client, world, next_local(14), headers)
    assert other.status_code == 400
    assert other.json["error"] == "VALIDATION_ERROR"
    assert "Idempotency-Key" in other.json["details"]["fields"]
    with sessions() as session:
        assert len(session.scalars(select(Booking)).all()) == 1


def test_idempotency_key_is_released_after_a_failure(client, sessions, stripe_emulator):
    world = make_world(sessions)
    headers = {"Idempotency-Key": "retry-me"}
    stripe_emulator.fail_next(n=1, status=500, path_prefix="/v1/payment_intents")
    assert book(client, world, next_local(11), headers).status_code == 502
    assert book(client, world, next_local(11), headers).status_code == 201


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"startTime": "2030-01-01T10:00:00"}, 400, "startTime"),
        ({"startTime": "tomorrow"}, 400, "startTime"),
        ({"clientId": 12}, 400, "clientId"),
        ({"artistId": "00000000-0000-4000-8000-000000000000"}, 404, None),
        ({"serviceId": "nope"}, 404, None),
        ({"clientId": "00000000-0000-4000-8000-000000000000"}, 404, None),
    ],
)
def test_bad_requests(client, sessions, change, status, field):
    world = make_world(sessions)
    response = book(client, world, next_local(11), **change)
    assert response.status_code == status
    if field:
        assert field in response.json["details"]["fields"]
    else:
        assert response.json["error"] == "NOT_FOUND"


def test_service_of_another_artist_is_not_found(client, sessions):
    first, second = make_world(sessions), make_world(sessions)
    response = client.post(
        "/api/bookings/create",
        json={
            "clientId": first.client_id,
            "artistId": first.artist_id,
            "serviceId": second.service_id,
            "startTime": next_local(11).isoformat(),
        },
    )
    assert response.status_code == 404


def test_expired_hold_frees_the_slot_and_is_swept(make_app, settings, sessions, stripe_emulator):
    clock = FakeClock()
    app = make_app(booking_hold_seconds=60, clock=clock)
    http = app.test_client()
    world = make_world(sessions)
    start = next_local(11)
    first = book(http, world, start)
    assert first.status_code == 201
    intent_id = first.json["paymentIntent"]["id"]
    query = {
        "artistId": world.artist_id,
        "startDate": start.isoformat(),
        "endDate": (start + timedelta(hours=1)).isoformat(),
        "serviceDurationMin": 60,
    }
    assert http.post("/api/availability", json=query).json["slots"][0]["available"] is False

    clock.advance(seconds=60)  # the hold's last instant: it no longer blocks the slot
    assert http.post("/api/availability", json=query).json["slots"][0]["available"] is True
    resources = app.extensions["inkflow"].resources
    queue = RecordingQueue()
    result = expire_holds(resources, EffectRunner(queue, StripeGateway(settings)), now=clock())
    assert result.expired == 1
    assert result.intents_cancelled == [intent_id]
    assert stripe_emulator.payment_intent(intent_id)["status"] == "canceled"
    assert len(queue.notifications()) == 1  # HOLD_EXPIRED, to the client
    with sessions() as session:
        assert session.scalars(select(Booking.status)).all() == [BookingStatus.EXPIRED]
    second = book(http, world, start)
    assert second.status_code == 201


def test_new_booking_expires_an_overlapping_stale_hold(make_app, sessions, stripe_emulator):
    clock = FakeClock()
    queue = RecordingQueue()
    http = make_app(booking_hold_seconds=60, clock=clock, queue=queue).test_client()
    world = make_world(sessions)
    start = next_local(11)
    first = book(http, world, start)
    clock.advance(seconds=61)
    second = book(http, world, start + timedelta(minutes=30))
    assert second.status_code == 201, second.json
    with sessions() as session:
        old = session.get(Booking, uuid.UUID(first.json["booking"]["id"]))
        assert old.status == BookingStatus.EXPIRED
        assert old.expired_at == clock()
    intent_id = first.json["paymentIntent"]["id"]
    assert stripe_emulator.payment_intent(intent_id)["status"] == "canceled"
    assert len(queue.notifications()) == 1  # HOLD_EXPIRED, enqueued after the commit


def test_too_many_open_holds_is_rate_limited(make_app, sessions):
    http = make_app(max_open_holds_per_client=2).test_client()
    world = make_world(sessions)
    assert book(http, world, next_local(10)).status_code == 201
    assert book(http, world, next_local(12)).status_code == 201
    third = book(http, world, next_local(14))
    assert third.status_code == 429
    assert third.json["error"] == "RATE_LIMITED"


def test_a_lock_that_times_out_answers_503_with_retry_after(make_app, sessions):
    """Another transaction holds the artist's schedule lock longer than lock_timeout (a
    worker stuck on something slow): the booking answers 503 SERVICE_UNAVAILABLE, which
    the client may retry, never a 500; nothing is left half-written."""
    http = make_app(database_lock_timeout_ms=200).test_client()
    world = make_world(sessions)
    with transaction(sessions) as holder:
        lock_artist_schedule(holder, uuid.UUID(world.artist_id))
        response = book(http, world, next_local(11))
    assert response.status_code == 503, response.json
    assert response.json["error"] == "SERVICE_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) > 0
    with sessions() as session:
        assert session.scalars(select(Booking)).all() == []
    assert book(http, world, next_local(11)).status_code == 201  # once the lock is free
