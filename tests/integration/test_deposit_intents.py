"""Deposit PaymentIntents left behind, and the reconciler that finds them
(shared/usecases/intents.py): booking creation through the Flask app, real PostgreSQL, the
Stripe emulator over HTTP with the real SDK. The database "restarts" at the worst moment
by having PostgreSQL terminate the app's connections while Stripe is answering."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus
from shared.adapters.payments import StripeGateway
from shared.adapters.runtime import Resources, build_resources
from shared.config import Settings
from shared.usecases.effects import EffectRunner
from shared.usecases.holds import expire_holds
from shared.usecases.intents import KEY_WINDOW, reconcile_deposit_intents
from tests.factories import World, make_world
from tests.fakes.queue import RecordingQueue
from tests.integration.test_booking_api import book, next_local

CREATE = "/v1/payment_intents"
VICTIM = "inkflow-api-victim"  # application_name of the app whose connections are cut


@pytest.fixture
def resources(settings: Settings) -> Iterator[Resources]:
    res = build_resources(settings, pool_size=1)
    yield res
    res.close()


@pytest.fixture
def victim_app(make_app: Callable[..., Flask], settings: Settings) -> Flask:
    return make_app(database_url=f"{settings.database_url}?application_name={VICTIM}")


def cut_connections_when_stripe_is_asked(
    engine: Engine, emulator: StripeEmulator
) -> threading.Thread:
    """Once the app has asked Stripe for the intent (Stripe is slow to answer), PostgreSQL
    terminates the app's connections, as a restart does: the booking is committed, the
    intent is made, and storing its id fails."""
    before = len(emulator.requests_to(CREATE, "POST"))

    def cut() -> None:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while len(emulator.requests_to(CREATE, "POST")) == before:
            assert datetime.now(UTC) < deadline
        with engine.begin() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = :name"),
                {"name": VICTIM},
            )  # fmt: skip

    thread = threading.Thread(target=cut)
    thread.start()
    return thread


def intents_of(emulator: StripeEmulator, booking_id: str) -> list[dict[str, Any]]:
    return [
        pi for pi in emulator.payment_intents() if pi["metadata"].get("bookingId") == booking_id
    ]


def only_booking(sessions: sessionmaker[Session], world: World) -> Booking:
    with transaction(sessions) as session:
        [booking] = session.scalars(
            select(Booking).where(Booking.artist_id == uuid.UUID(world.artist_id))
        ).all()
        return booking


def orphan(
    victim_app: Flask,
    sessions: sessionmaker[Session],
    engine: Engine,
    emulator: StripeEmulator,
) -> tuple[Booking, dict[str, Any]]:
    """Book while the database goes away between Stripe's answer and storing it."""
    world = make_world(sessions)
    emulator.delay_next(0.5, path_prefix=CREATE, method="POST", phase="after")
    cutter = cut_connections_when_stripe_is_asked(engine, emulator)
    response = book(victim_app.test_client(), world, next_local(11))
    cutter.join()
    # Not a 500: the database was momentarily unavailable, the client may retry.
    assert response.status_code == 503, response.json
    assert response.json["error"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"]
    booking = only_booking(sessions, world)
    assert booking.status == BookingStatus.PENDING_PAYMENT
    assert booking.payment_intent_id is None  # nobody names the intent Stripe made
    [intent] = intents_of(emulator, str(booking.id))
    assert intent["status"] == "requires_payment_method"
    return booking, intent


def after_grace(settings: Settings) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=settings.intent_reconcile_grace_seconds + 1)


def reconcile(resources: Resources, settings: Settings, now: datetime | None = None) -> Any:
    return reconcile_deposit_intents(
        resources, StripeGateway(settings), now=now or after_grace(settings)
    )


def sweep_holds(resources: Resources, settings: Settings, booking: Booking) -> list[str]:
    effects = EffectRunner(RecordingQueue(), StripeGateway(settings))
    assert booking.expires_at is not None
    swept = expire_holds(resources, effects, now=booking.expires_at + timedelta(seconds=1))
    return swept.intents_cancelled


def test_the_intent_of_a_booking_still_waiting_is_attached_and_cancelled_when_it_expires(
    victim_app: Flask,
    settings: Settings,
    resources: Resources,
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
) -> None:
    booking, intent = orphan(victim_app, sessions, engine, stripe_emulator)
    # Too young: its booking request might still be about to store the id.
    assert reconcile(resources, settings, now=datetime.now(UTC)).attached == []

    done = reconcile(resources, settings)
    assert done.attached == [booking.id]
    assert (done.cancelled, done.retry, done.stuck) == ([], [], [])
    assert only_booking(sessions, _world_of(booking)).payment_intent_id == intent["id"]
    # Found by asking again with the booking's key: Stripe answered the same intent.
    assert [pi["id"] for pi in intents_of(stripe_emulator, str(booking.id))] == [intent["id"]]
    assert stripe_emulator.requests_to(CREATE, "POST")[-1].replayed

    # From now on the hold sweeper knows the intent it has to cancel.
    assert sweep_holds(resources, settings, booking) == [intent["id"]]
    assert stripe_emulator.payment_intent(intent["id"])["status"] == "canceled"
    assert reconcile(resources, settings).attached == []


def test_the_intent_of_a_booking_that_expired_meanwhile_is_cancelled(
    victim_app: Flask,
    settings: Settings,
    resources: Resources,
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
) -> None:
    booking, intent = orphan(victim_app, sessions, engine, stripe_emulator)
    assert sweep_holds(resources, settings, booking) == []  # it knew of no intent

    done = reconcile(resources, settings)
    assert done.cancelled == [intent["id"]]
    assert stripe_emulator.payment_intent(intent["id"])["status"] == "canceled"
    expired = only_booking(sessions, _world_of(booking))
    assert expired.status == BookingStatus.EXPIRED
    assert expired.payment_intent_id == intent["id"]  # accounted for: not looked at again
    calls = len(stripe_emulator.requests)
    assert reconcile(resources, settings).cancelled == []
    assert len(stripe_emulator.requests) == calls


def test_stripe_answering_too_late_leaves_no_open_intent(
    client: Any,
    settings: Settings,
    resources: Resources,
    sessions: sessionmaker[Session],
    stripe_emulator: StripeEmulator,
) -> None:
    """Stripe made the intent but its answer came after our timeout: the booking was
    cancelled (502), the intent was open."""
    world = make_world(sessions)
    stripe_emulator.delay_next(3.0, path_prefix=CREATE, method="POST", phase="after")
    response = book(client, world, next_local(12))
    assert response.status_code == 502
    booking = only_booking(sessions, world)
    assert booking.status == BookingStatus.CANCELLED
    [intent] = intents_of(stripe_emulator, str(booking.id))
    assert intent["status"] == "requires_payment_method"

    assert reconcile(resources, settings).cancelled == [intent["id"]]
    assert stripe_emulator.payment_intent(intent["id"])["status"] == "canceled"


def test_a_request_that_never_reached_stripe_ends_with_one_cancelled_intent(
    client: Any,
    settings: Settings,
    resources: Resources,
    sessions: sessionmaker[Session],
    stripe_emulator: StripeEmulator,
) -> None:
    """Asking again makes the intent the first request would have made; the booking ended,
    so it is cancelled at once. One intent, cancelled, named by its booking."""
    world = make_world(sessions)
    stripe_emulator.fail_next(n=1, status=500, path_prefix=CREATE, method="POST")
    assert book(client, world, next_local(13)).status_code == 502
    booking = only_booking(sessions, world)
    assert intents_of(stripe_emulator, str(booking.id)) == []

    done = reconcile(resources, settings)
    [intent] = intents_of(stripe_emulator, str(booking.id))
    assert done.cancelled == [intent["id"]]
    assert intent["status"] == "canceled"
    assert only_booking(sessions, world).payment_intent_id == intent["id"]


def test_stripe_failing_leaves_the_booking_for_the_next_sweep(
    victim_app: Flask,
    settings: Settings,
    resources: Resources,
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
) -> None:
    booking, intent = orphan(victim_app, sessions, engine, stripe_emulator)
    sweep_holds(resources, settings, booking)
    stripe_emulator.fail_always(status=500, path_prefix=f"{CREATE}/{intent['id']}/cancel")
    try:
        done = reconcile(resources, settings)
    finally:
        stripe_emulator.reset_failures()
    assert done.retry == [booking.id]
    # Not named while its intent is still open: the next sweep cancels it.
    assert only_booking(sessions, _world_of(booking)).payment_intent_id is None
    assert stripe_emulator.payment_intent(intent["id"])["status"] == "requires_payment_method"

    assert reconcile(resources, settings).cancelled == [intent["id"]]
    assert stripe_emulator.payment_intent(intent["id"])["status"] == "canceled"


def test_only_bookings_within_the_key_window_and_with_a_deposit_are_looked_at(
    client: Any,
    settings: Settings,
    resources: Resources,
    sessions: sessionmaker[Session],
    stripe_emulator: StripeEmulator,
) -> None:
    """Past Stripe's key window a replay would make a second intent: never asked. A free
    booking has no intent to find."""
    paid, free = make_world(sessions), make_world(sessions, deposit="0.00")
    stripe_emulator.fail_next(n=1, status=500, path_prefix=CREATE, method="POST")
    assert book(client, paid, next_local(14)).status_code == 502
    assert book(client, free, next_local(14)).status_code == 201
    old = only_booking(sessions, paid)
    with transaction(sessions) as session:
        session.execute(
            update(Booking)
            .where(Booking.id == old.id)
            .values(created_at=datetime.now(UTC) - KEY_WINDOW - timedelta(minutes=1))
        )
    calls = len(stripe_emulator.requests)
    done = reconcile(resources, settings)
    assert (done.attached, done.cancelled, done.retry, done.stuck) == ([], [], [], [])
    assert len(stripe_emulator.requests) == calls


def _world_of(booking: Booking) -> World:
    return World(str(booking.artist_id), str(booking.service_id), str(booking.client_id), None)
