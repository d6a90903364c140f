"""Applying Stripe events (shared.usecases.stripe_events.apply_event) in-process: real PostgreSQL,
the Stripe emulator over HTTP with the real SDK, a queue that records what is enqueued.

Every handler and branch, duplicates (also concurrent), any order of one booking's events
(every permutation, each delivered twice), late payments (slot free / slot taken),
mismatches, and the operator CLI (`inkflow events list/replay`)."""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import RecordedRequest, StripeEmulator
from services.cli import main as cli
from shared.adapters.db import transaction
from shared.adapters.locks import SlotLocks
from shared.adapters.models import (
    Artist,
    Booking,
    BookingStatus,
    Client,
    DepositStatus,
    EventStatus,
    Notification,
    Refund,
    RefundReason,
    RefundStatus,
    StripeEvent,
    StripeTransaction,
)
from shared.adapters.payments import (
    RefundRequest,
    StripeGateway,
    TransientPaymentError,
    refund_idempotency_key,
)
from shared.adapters.runtime import Resources, build_resources
from shared.config import Settings
from shared.usecases import refunds
from shared.usecases.booking import BookingRequest, BookingService
from shared.usecases.effects import EffectRunner
from shared.usecases.holds import expire_holds
from shared.usecases.inbox import (
    MAX_AUTOMATIC_ATTEMPTS,
    VerifiedEvent,
    redeliver_stale_events,
    store_event,
)
from shared.usecases.stripe_events import apply_event
from tests import support
from tests.factories import World, make_world
from tests.fakes.queue import RecordingQueue

JSON = dict[str, Any]
START = (datetime.now(UTC) + timedelta(days=3)).replace(hour=11, minute=0, second=0, microsecond=0)


@dataclass
class Env:
    resources: Resources
    gateway: StripeGateway
    queue: RecordingQueue
    effects: EffectRunner
    emulator: StripeEmulator
    bookings: BookingService
    refunds_made: set[str] = field(default_factory=set)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.resources.sessions

    def book(
        self, world: World, start: datetime = START, *, now: datetime | None = None
    ) -> Booking:
        request = BookingRequest(world.client_id, world.artist_id, world.service_id, start)
        created = self.bookings.create(request, now=now or datetime.now(UTC))
        return created.booking

    def event(self, type_: str, obj: JSON, **kwargs: Any) -> JSON:
        return self.emulator.event(type_, obj, **kwargs)

    def store(self, payload: JSON) -> str:
        created = payload.get("created")
        store_event(
            self.resources,
            VerifiedEvent(payload["id"], payload["type"], created, payload),
        )
        return str(payload["id"])

    def apply_id(self, event_id: str) -> str:
        """Apply a stored event as the worker's task does: then run its effects."""
        outcome = apply_event(self.resources, event_id, now=datetime.now(UTC), stripe=self.gateway)
        self.effects.run(outcome.effects)
        return outcome.note

    def apply(self, payload: JSON) -> str:
        """Deliver an event as the receiver would (store, deduplicated) and apply it."""
        return self.apply_id(self.store(payload))

    def make_refund(self, refund_id: str) -> str:
        """The refund task, as the worker runs it."""
        outcome = refunds.make(
            self.resources, self.gateway, uuid.UUID(refund_id), now=datetime.now(UTC)
        )
        self.effects.run(outcome.effects)
        self.refunds_made.add(refund_id)
        return outcome.note

    def make_owed_refunds(self) -> list[str]:
        """Run the refund tasks enqueued and not run yet."""
        todo = [r for r in dict.fromkeys(self.queue.refunds()) if r not in self.refunds_made]
        return [self.make_refund(r) for r in todo]

    def owed(self, booking_id: uuid.UUID) -> list[Refund]:
        with transaction(self.sessions) as session:
            return list(session.scalars(select(Refund).where(Refund.booking_id == booking_id)))

    def booking(self, booking_id: uuid.UUID) -> Booking:
        with transaction(self.sessions) as session:
            found = session.get(Booking, booking_id)
            assert found is not None
            return found

    def ledger(self, booking_id: uuid.UUID) -> list[StripeTransaction]:
        with transaction(self.sessions) as session:
            return list(
                session.scalars(
                    select(StripeTransaction)
                    .where(StripeTransaction.booking_id == booking_id)
                    .order_by(StripeTransaction.created_at)
                )
            )

    def notes(self, booking_id: uuid.UUID) -> list[Notification]:
        with transaction(self.sessions) as session:
            return list(
                session.scalars(select(Notification).where(Notification.booking_id == booking_id))
            )

    def inbox(self, event_id: str) -> StripeEvent:
        with transaction(self.sessions) as session:
            found = session.get(StripeEvent, event_id)
            assert found is not None
            return found


@pytest.fixture
def env(settings: Settings, stripe_emulator: StripeEmulator) -> Iterator[Env]:
    resources = build_resources(settings, pool_size=6)
    gateway = StripeGateway(settings)
    queue = RecordingQueue()
    effects = EffectRunner(queue, gateway)
    locks = SlotLocks(resources.redis, ttl_seconds=settings.lock_ttl_seconds)
    yield Env(
        resources,
        gateway,
        queue,
        effects,
        stripe_emulator,
        BookingService(resources, gateway, locks, effects),
    )
    stripe_emulator.reset_failures()
    resources.close()


@pytest.fixture
def world(env: Env) -> World:
    return make_world(env.sessions)


def summary(env: Env, booking_id: uuid.UUID) -> tuple[str, list[tuple[str, str, int]], set[str]]:
    """What must not depend on order or repetition: status, ledger, who was told what."""
    ledger = sorted((t.kind, t.status, t.amount_minor) for t in env.ledger(booking_id))
    notes = {f"{n.kind}:{n.recipient}" for n in env.notes(booking_id)}
    return env.booking(booking_id).status, ledger, notes


def refund_requests(env: Env, intent_id: str) -> list[RecordedRequest]:
    return [
        r
        for r in env.emulator.requests_to("/v1/refunds", "POST")
        if r.params.get("payment_intent") == intent_id
    ]


def emails(world: World, env: Env) -> tuple[str, str]:
    """(client, artist) addresses of a world."""
    with transaction(env.sessions) as session:
        artist = session.get(Artist, uuid.UUID(world.artist_id))
        client = session.get(Client, uuid.UUID(world.client_id))
        assert artist is not None
        assert client is not None
        return client.email, artist.email


# --- payment_intent.succeeded -------------------------------------------------------------


def test_succeeded_confirms_records_payment_and_queues_two_emails(env: Env, world: World) -> None:
    booking = env.book(world)
    assert booking.status == BookingStatus.PENDING_PAYMENT
    assert booking.payment_intent_id
    pi = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    payload = env.event("payment_intent.succeeded", pi)

    assert env.apply(payload) == "confirmed"

    after = env.booking(booking.id)
    assert after.status == BookingStatus.CONFIRMED
    assert after.confirmed_at is not None
    [tx] = env.ledger(booking.id)
    assert (tx.kind, tx.status, tx.amount_minor, tx.currency) == (
        "PAYMENT",
        "SUCCEEDED",
        5000,
        "eur",
    )
    assert (tx.stripe_object_id, tx.payment_intent_id, tx.stripe_event_id) == (
        pi["id"],
        pi["id"],
        payload["id"],
    )
    client_email, artist_email = emails(world, env)
    notes = env.notes(booking.id)
    assert {(n.kind, n.recipient, n.status) for n in notes} == {
        ("BOOKING_CONFIRMED", client_email, "PENDING"),
        ("BOOKING_CONFIRMED", artist_email, "PENDING"),
    }
    # Enqueued after the commit, one send task per outbox row.
    assert sorted(env.queue.notifications()) == sorted(str(n.id) for n in notes)
    event = env.inbox(payload["id"])
    assert event.status == EventStatus.PROCESSED
    assert event.processed_at is not None
    assert event.attempts == 1
    assert event.last_error is None


def test_duplicate_deliveries_sequential_and_concurrent_apply_once(env: Env, world: World) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    pi = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    payload = env.event("payment_intent.succeeded", pi)
    event_id = env.store(payload)

    # Five workers handed the same event at once: the inbox row lock lets one apply it.
    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(lambda _: env.apply_id(event_id), range(5)))
    assert sorted(outcomes) == ["already processed"] * 4 + ["confirmed"]
    # Then five more deliveries, one after the other.
    for _ in range(5):
        assert env.apply(payload) == "already processed"
    # A different event about the same payment adds nothing either.
    assert env.apply(env.event("payment_intent.succeeded", pi)) == "already confirmed"

    assert [(t.kind, t.status) for t in env.ledger(booking.id)] == [("PAYMENT", "SUCCEEDED")]
    assert len(env.notes(booking.id)) == 2
    assert len(env.queue.notifications()) == 2
    assert env.inbox(event_id).attempts == 1


# --- payment_intent.payment_failed ----------------------------------------------------------


def test_failed_payment_keeps_the_hold_records_code_and_tells_the_client(
    env: Env, world: World
) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    failed = env.emulator.fail_payment_intent(
        booking.payment_intent_id, "expired_card", "Your card has expired."
    )
    assert (
        env.apply(env.event("payment_intent.payment_failed", failed)) == "failed attempt recorded"
    )

    after = env.booking(booking.id)
    assert after.status == BookingStatus.PENDING_PAYMENT
    assert after.expires_at == booking.expires_at  # the hold stays as it was
    [tx] = env.ledger(booking.id)
    assert (tx.kind, tx.status, tx.amount_minor) == ("PAYMENT", "FAILED", 5000)
    assert (tx.failure_code, tx.failure_message) == ("expired_card", "Your card has expired.")
    client_email, _ = emails(world, env)
    assert [(n.kind, n.recipient) for n in env.notes(booking.id)] == [
        ("PAYMENT_FAILED", client_email)
    ]

    # A second failed attempt is a second ledger row (one per event), not a second e-mail.
    declined = env.emulator.fail_payment_intent(booking.payment_intent_id)
    env.apply(env.event("payment_intent.payment_failed", declined))
    codes = sorted(t.failure_code or "" for t in env.ledger(booking.id))
    assert codes == ["card_declined", "expired_card"]
    assert len(env.notes(booking.id)) == 1

    # The client retries with another card: confirmed.
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    assert env.apply(env.event("payment_intent.succeeded", paid)) == "confirmed"
    assert env.booking(booking.id).status == BookingStatus.CONFIRMED


def test_an_event_that_can_never_apply_waits_for_an_operator_at_once(
    env: Env, world: World
) -> None:
    """A stored event the database refuses (a failure code longer than any Stripe sends)
    fails the same way on every attempt: it is FAILED with its automatic attempts used up,
    so the inbox sweeper does not re-enqueue it ten times; an operator replays it."""
    booking = env.book(world)
    assert booking.payment_intent_id
    failed = env.emulator.fail_payment_intent(booking.payment_intent_id, "x" * 300, "Odd.")
    event_id = env.store(env.event("payment_intent.payment_failed", failed))
    with pytest.raises(DBAPIError):
        env.apply_id(event_id)
    stored = env.inbox(event_id)
    assert stored.status == EventStatus.FAILED
    assert stored.attempts == MAX_AUTOMATIC_ATTEMPTS
    assert stored.last_error is not None
    assert "x" * 300 not in stored.last_error  # no parameters in the error
    later = datetime.now(UTC) + timedelta(hours=1)
    assert redeliver_stale_events(env.resources, now=later).tasks == ()


def test_failed_after_succeeded_never_undoes_the_confirmation(env: Env, world: World) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    failed = env.emulator.fail_payment_intent(booking.payment_intent_id)
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    env.apply(env.event("payment_intent.succeeded", paid))
    note = env.apply(env.event("payment_intent.payment_failed", failed))

    assert note == "failed attempt recorded; booking is CONFIRMED"
    assert env.booking(booking.id).status == BookingStatus.CONFIRMED
    assert sorted((t.kind, t.status) for t in env.ledger(booking.id)) == [
        ("PAYMENT", "FAILED"),
        ("PAYMENT", "SUCCEEDED"),
    ]
    assert {n.kind for n in env.notes(booking.id)} == {"BOOKING_CONFIRMED"}


# --- any order, any number of deliveries ----------------------------------------------------


def test_every_order_of_a_bookings_events_reaches_the_same_state(env: Env) -> None:
    """failed attempt, payment, a refund made in the Dashboard and a (stray) cancellation:
    all 24 orders, each delivered twice, end in the state of the first decisive event with
    the same three ledger rows and at most one e-mail per (kind, recipient). A payment
    applied first confirms the booking for good (its deposit PARTIALLY_REFUNDED by the
    Dashboard refund); a cancellation applied first cancels it for good, and what is left
    of the payment is then owed back."""
    world = make_world(env.sessions)
    client_email, artist_email = emails(world, env)
    results = set()
    for n, order in enumerate(itertools.permutations(range(4))):
        booking = env.book(world, START + timedelta(hours=n % 4, days=n // 4))
        pi_id = booking.payment_intent_id
        assert pi_id
        failed = env.emulator.fail_payment_intent(pi_id)
        paid = env.emulator.succeed_payment_intent(pi_id)
        env.emulator.refund_payment_intent(pi_id, amount=1500)
        events = [
            env.event("payment_intent.payment_failed", failed),
            env.event("payment_intent.succeeded", paid),
            env.event("charge.refunded", env.emulator.charge_object(pi_id)),
            env.event("payment_intent.canceled", {**paid, "status": "canceled"}),
        ]
        for index in [*order, *reversed(order)]:
            env.apply(events[index])
        status, ledger, notes = summary(env, booking.id)
        cancelled_first = order.index(3) < order.index(1)
        owed = env.owed(booking.id)
        assert f"PAYMENT_REFUNDED:{client_email}" in notes
        if cancelled_first:
            assert status == BookingStatus.CANCELLED
            # Owed: what the Dashboard refund left of the payment, whichever came first.
            assert [(r.reason, r.amount_minor) for r in owed] == [
                (
                    RefundReason.LATE_PAYMENT,
                    5000 - 1500 if order.index(2) < order.index(1) else 5000,
                )
            ]
        else:
            assert status == BookingStatus.CONFIRMED
            assert owed == []
            assert notes >= {
                f"BOOKING_CONFIRMED:{client_email}",
                f"BOOKING_CONFIRMED:{artist_email}",
            }
        assert notes <= {
            f"BOOKING_CONFIRMED:{client_email}",
            f"BOOKING_CONFIRMED:{artist_email}",
            f"PAYMENT_REFUNDED:{client_email}",
            f"PAYMENT_FAILED:{client_email}",
        }
        # A failure is only reported while the booking waits for its deposit.
        told_failed = f"PAYMENT_FAILED:{client_email}" in notes
        assert told_failed == (order.index(0) < min(order.index(1), order.index(3))), order
        after = env.booking(booking.id)
        results.add((status, tuple(ledger), after.deposit_status, after.amount_refunded_minor))
        assert all(env.inbox(e["id"]).status == EventStatus.PROCESSED for e in events)
    ledger_rows = (
        ("PAYMENT", "FAILED", 5000),
        ("PAYMENT", "SUCCEEDED", 5000),
        ("REFUND", "SUCCEEDED", 1500),
    )
    assert results == {
        (BookingStatus.CONFIRMED, ledger_rows, DepositStatus.PARTIALLY_REFUNDED, 1500),
        (BookingStatus.CANCELLED, ledger_rows, DepositStatus.REFUND_PENDING, 1500),
    }


# --- payment_intent.canceled, charge.refunded, account.updated, others ------------------------


def test_canceled_releases_a_pending_booking_only(env: Env, world: World) -> None:
    pending = env.book(world)
    assert pending.payment_intent_id
    canceled = env.gateway.cancel_intent(pending.payment_intent_id)
    obj = env.emulator.payment_intent(canceled.id)
    assert env.apply(env.event("payment_intent.canceled", obj)) == "cancelled"
    after = env.booking(pending.id)
    assert after.status == BookingStatus.CANCELLED
    assert after.cancelled_at is not None
    # The slot is free again.
    again = env.book(world)
    assert again.status == BookingStatus.PENDING_PAYMENT
    assert again.payment_intent_id

    paid = env.emulator.succeed_payment_intent(again.payment_intent_id)
    env.apply(env.event("payment_intent.succeeded", paid))
    stray = env.event("payment_intent.canceled", {**paid, "status": "canceled"})
    assert env.apply(stray) == "booking is CONFIRMED"
    assert env.booking(again.id).status == BookingStatus.CONFIRMED


def test_charge_refunded_records_each_refund_once(env: Env, world: World) -> None:
    booking = env.book(world)
    pi_id = booking.payment_intent_id
    assert pi_id
    env.apply(env.event("payment_intent.succeeded", env.emulator.succeed_payment_intent(pi_id)))
    first = env.emulator.refund_payment_intent(pi_id, amount=1000)
    after_first = env.event("charge.refunded", env.emulator.charge_object(pi_id))
    second = env.emulator.refund_payment_intent(pi_id, amount=2500)
    after_second = env.event("charge.refunded", env.emulator.charge_object(pi_id))

    # The later event (listing both refunds) arrives first, then the earlier one, twice.
    assert env.apply(after_second) == "2 refund(s) recorded"
    assert env.apply(after_first) == "0 refund(s) recorded"
    assert env.apply(after_second) == "already processed"

    refunds = {
        (t.stripe_object_id, t.amount_minor) for t in env.ledger(booking.id) if t.kind == "REFUND"
    }
    assert refunds == {(first["id"], 1000), (second["id"], 2500)}
    assert env.booking(booking.id).status == BookingStatus.CONFIRMED


def test_account_updated_follows_the_newest_account_state(env: Env, world: World) -> None:
    account = env.emulator.set_account(str(world.stripe_account_id), charges_enabled=False)
    newer = env.event("account.updated", account, created=2_000_000_000)
    older = env.event(
        "account.updated", {**account, "charges_enabled": True}, created=1_900_000_000
    )

    def charges_enabled() -> bool:
        with transaction(env.sessions) as session:
            artist = session.get(Artist, uuid.UUID(world.artist_id))
            assert artist is not None
            return artist.charges_enabled

    assert charges_enabled()
    assert env.apply(newer) == "1 artist(s) updated"
    assert not charges_enabled()
    assert env.apply(older) == "0 artist(s) updated"  # arrived late: ignored
    assert not charges_enabled()
    enabled = env.emulator.set_account(str(world.stripe_account_id), charges_enabled=True)
    env.apply(env.event("account.updated", enabled, created=2_000_000_100))
    assert charges_enabled()
    unknown = env.event("account.updated", {**account, "id": "acct_1NotOurs"})
    assert env.apply(unknown) == "0 artist(s) updated"


def test_account_updated_keeps_payouts_and_requirements_due_true_to_stripe(
    env: Env, world: World
) -> None:
    acct = str(world.stripe_account_id)
    pending = env.emulator.set_account(acct, charges_enabled=False)
    due = ["external_account", "individual.verification.document"]
    restricted = {
        **pending,
        "charges_enabled": True,
        "payouts_enabled": False,
        "requirements": {**pending["requirements"], "currently_due": due},
    }
    enabled = {
        **pending,
        "charges_enabled": True,
        "payouts_enabled": True,
        "requirements": {**pending["requirements"], "currently_due": []},
    }

    def connect_state() -> tuple[bool, bool, list[str]]:
        with transaction(env.sessions) as session:
            artist = session.get(Artist, uuid.UUID(world.artist_id))
            assert artist is not None
            return artist.charges_enabled, artist.payouts_enabled, artist.requirements_due

    assert env.apply(env.event("account.updated", restricted, created=2_000_000_000)) == (
        "1 artist(s) updated"
    )
    assert connect_state() == (True, False, due)
    # An older state arriving late changes none of the three.
    env.apply(env.event("account.updated", enabled, created=1_999_999_999))
    assert connect_state() == (True, False, due)
    env.apply(env.event("account.updated", enabled, created=2_000_000_001))
    assert connect_state() == (True, True, [])
    # Stripe asks for something again: payouts stop, the artist sees why.
    env.apply(env.event("account.updated", restricted, created=2_000_000_002))
    assert connect_state() == (True, False, due)
    nameless = env.event("account.updated", {"object": "account", "charges_enabled": False})
    assert env.apply(nameless) == "account.updated without an account id"
    assert connect_state() == (True, False, due)


def test_other_types_and_unknown_intents_are_stored_and_ignored(env: Env) -> None:
    payload = env.event("customer.created", {"id": "cus_1", "object": "customer"})
    # Types nothing handles are stored as IGNORED on receipt: no task is ever needed.
    assert env.apply(payload) == "already ignored"
    assert env.inbox(payload["id"]).status == EventStatus.IGNORED
    assert env.inbox(payload["id"]).processed_at is not None
    stray = env.event(
        "payment_intent.succeeded",
        {"id": "pi_1Unknown", "object": "payment_intent", "amount": 5000, "metadata": {}},
    )
    assert env.apply(stray) == "no booking for intent pi_1Unknown"
    assert env.inbox(stray["id"]).status == EventStatus.IGNORED
    assert env.apply_id("evt_1NeverStored") == "unknown event"


# --- mismatches -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"amount": 4000, "amount_received": 4000}, "amount 4000 != expected 5000"),
        ({"currency": "usd"}, "currency usd != expected eur"),
        ({"transfer_data": {"destination": "acct_1Somebody"}}, "destination acct_1Somebody"),
        ({"id": "pi_1Other"}, "intent pi_1Other is not the booking's"),
    ],
)
def test_a_payment_that_does_not_match_is_recorded_never_confirmed(
    env: Env, world: World, caplog: pytest.LogCaptureFixture, change: JSON, problem: str
) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    payload = env.event("payment_intent.succeeded", {**paid, **change})
    with caplog.at_level(logging.ERROR, logger="inkflow.stripe_events"):
        assert env.apply(payload) == "not confirmed: mismatch"

    assert env.booking(booking.id).status == BookingStatus.PENDING_PAYMENT
    [tx] = env.ledger(booking.id)  # what Stripe took is in the ledger
    assert (tx.kind, tx.status) == ("PAYMENT", "SUCCEEDED")
    assert tx.amount_minor == change.get("amount_received", 5000)
    assert env.notes(booking.id) == []
    event = env.inbox(payload["id"])
    assert event.status == EventStatus.PROCESSED
    assert event.last_error is not None
    assert problem in event.last_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert problem in errors[0].getMessage()


# --- late payments --------------------------------------------------------------------------


def _expire(env: Env, booking: Booking, status: BookingStatus) -> None:
    """The hold ends while the client pays: the sweeper (EXPIRED, its intent can no longer
    be cancelled because it succeeded meanwhile) or a cancellation (CANCELLED)."""
    if status == BookingStatus.EXPIRED:
        past = datetime.now(UTC) - timedelta(seconds=1)
        with transaction(env.sessions) as session:
            session.execute(update(Booking).where(Booking.id == booking.id).values(expires_at=past))
        result = expire_holds(env.resources, env.effects, now=datetime.now(UTC))
        assert result.expired == 1
    else:
        with transaction(env.sessions) as session:
            session.execute(update(Booking).where(Booking.id == booking.id).values(status=status))
    assert env.booking(booking.id).status == status


def test_late_payment_is_confirmed_when_the_slot_is_still_free(env: Env, world: World) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    _expire(env, booking, BookingStatus.EXPIRED)

    assert env.apply(env.event("payment_intent.succeeded", paid)) == "late payment confirmed"

    after = env.booking(booking.id)
    assert (after.status, after.deposit_status) == (BookingStatus.CONFIRMED, "PAID")
    assert [(t.kind, t.status) for t in env.ledger(booking.id)] == [("PAYMENT", "SUCCEEDED")]
    assert {n.kind for n in env.notes(booking.id)} >= {"BOOKING_CONFIRMED"}
    assert refund_requests(env, paid["id"]) == []


def test_a_payment_for_a_cancelled_booking_is_refunded_even_when_the_slot_is_free(
    env: Env, world: World
) -> None:
    """A booking someone cancelled never comes back to life."""
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    _expire(env, booking, BookingStatus.CANCELLED)

    assert env.apply(env.event("payment_intent.succeeded", paid)) == "late payment: refund owed"

    after = env.booking(booking.id)
    assert (after.status, after.deposit_status) == (BookingStatus.CANCELLED, "REFUND_PENDING")
    [owed] = env.owed(booking.id)
    assert (owed.reason, owed.amount_minor) == (RefundReason.LATE_PAYMENT, 5000)
    assert not {n.kind for n in env.notes(booking.id)} & {"BOOKING_CONFIRMED"}


@pytest.mark.parametrize("status", [BookingStatus.EXPIRED, BookingStatus.CANCELLED])
def test_late_payment_is_refunded_in_full_when_the_slot_was_taken(
    env: Env, world: World, status: BookingStatus
) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    _expire(env, booking, status)
    other_client = make_world(env.sessions)  # only its client is used
    taker = env.book(replace(world, client_id=other_client.client_id))
    assert taker.status == BookingStatus.PENDING_PAYMENT

    payload = env.event("payment_intent.succeeded", paid)
    note = env.apply(payload)

    # Decided and committed: the refund is owed, Stripe not asked yet.
    assert note == "late payment: refund owed"
    assert env.booking(booking.id).status == status
    assert env.booking(taker.id).status == BookingStatus.PENDING_PAYMENT
    [owed] = env.owed(booking.id)
    assert (owed.status, owed.reason, owed.amount_minor, owed.currency) == (
        RefundStatus.PENDING,
        RefundReason.LATE_PAYMENT,
        5000,
        "eur",
    )
    assert owed.payment_intent_id == paid["id"]
    assert owed.stripe_refund_id is None
    assert env.queue.refunds() == [str(owed.id)]
    assert refund_requests(env, paid["id"]) == []

    # The task (after the commit, no transaction open) makes it.
    [made] = env.make_owed_refunds()
    assert made.startswith("refund re_")
    assert made.endswith(" succeeded")
    [refund_request] = refund_requests(env, paid["id"])
    assert refund_request.idempotency_key == refund_idempotency_key(
        booking.id, RefundReason.LATE_PAYMENT
    )
    assert refund_request.params["payment_intent"] == paid["id"]
    assert refund_request.params["reverse_transfer"] == "true"
    assert refund_request.params["refund_application_fee"] == "true"
    assert "amount" not in refund_request.params  # in full
    [owed] = env.owed(booking.id)
    assert owed.status == RefundStatus.SUCCEEDED
    assert owed.stripe_refund_id
    assert owed.attempts == 1
    assert owed.settled_at is not None
    ledger = {(t.kind, t.status, t.amount_minor) for t in env.ledger(booking.id)}
    assert ledger == {("PAYMENT", "SUCCEEDED", 5000), ("REFUND", "SUCCEEDED", 5000)}
    client_email, _ = emails(world, env)
    refund_notes = [n for n in env.notes(booking.id) if n.kind == "PAYMENT_REFUNDED"]
    assert [n.recipient for n in refund_notes] == [client_email]
    assert str(refund_notes[0].id) in env.queue.notifications()

    # Redelivered, the task run again, and Stripe's charge.refunded: nothing more.
    assert env.apply(payload) == "already processed"
    assert env.make_refund(str(owed.id)) == "already succeeded"
    env.apply(env.event("charge.refunded", env.emulator.charge_object(paid["id"])))
    assert len(refund_requests(env, paid["id"])) == 1
    assert len([t for t in env.ledger(booking.id) if t.kind == "REFUND"]) == 1
    assert len(env.owed(booking.id)) == 1


def test_late_payment_is_confirmed_over_a_stale_hold(env: Env, world: World) -> None:
    """A later hold on the same slot that has itself expired (but was not swept yet) does
    not take the slot: it is expired and the late payment is kept."""
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    _expire(env, booking, BookingStatus.EXPIRED)
    other_client = make_world(env.sessions)
    stale = env.book(
        replace(world, client_id=other_client.client_id),
        now=datetime.now(UTC) - timedelta(seconds=env.resources.settings.booking_hold_seconds + 5),
    )
    assert stale.status == BookingStatus.PENDING_PAYMENT
    assert stale.payment_intent_id

    assert env.apply(env.event("payment_intent.succeeded", paid)) == "late payment confirmed"

    assert env.booking(booking.id).status == BookingStatus.CONFIRMED
    assert env.booking(stale.id).status == BookingStatus.EXPIRED
    assert env.emulator.payment_intent(stale.payment_intent_id)["status"] == "canceled"
    assert [n.kind for n in env.notes(stale.id)] == ["HOLD_EXPIRED"]
    assert refund_requests(env, paid["id"]) == []


def refunded_id(env: Env, paid: JSON) -> str:
    [refund] = env.emulator.refunds_of(paid["id"])
    return str(refund["id"])


def _owe_late_refund(env: Env, world: World) -> tuple[Booking, JSON, Refund]:
    """A late payment on a taken slot, applied: its refund is owed, not made yet."""
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    _expire(env, booking, BookingStatus.EXPIRED)
    env.book(replace(world, client_id=make_world(env.sessions).client_id))
    assert env.apply(env.event("payment_intent.succeeded", paid)) == "late payment: refund owed"
    [owed] = env.owed(booking.id)
    return booking, paid, owed


def test_a_refund_that_fails_transiently_stays_owed_and_a_retry_makes_it_once(
    env: Env, world: World
) -> None:
    booking, paid, owed = _owe_late_refund(env, world)

    env.emulator.fail_next(1, status=500, path_prefix="/v1/refunds")
    with pytest.raises(TransientPaymentError):  # the task retries it with backoff
        env.make_refund(str(owed.id))
    [after] = env.owed(booking.id)
    assert after.status == RefundStatus.PENDING
    assert after.attempts == 1
    assert after.last_error
    assert after.last_error.startswith("TransientPaymentError")
    assert [t.kind for t in env.ledger(booking.id)] == ["PAYMENT"]
    assert not [n for n in env.notes(booking.id) if n.kind == "PAYMENT_REFUNDED"]

    assert env.make_refund(str(owed.id)).endswith("succeeded")
    [after] = env.owed(booking.id)
    assert after.status == RefundStatus.SUCCEEDED
    assert after.attempts == 2
    assert after.last_error is None
    assert len([t for t in env.ledger(booking.id) if t.kind == "REFUND"]) == 1
    assert len(env.emulator.refunds_of(paid["id"])) == 1


def test_a_refused_refund_is_failed_for_an_operator_and_not_retried(env: Env, world: World) -> None:
    booking, paid, owed = _owe_late_refund(env, world)
    env.emulator.fail_next(
        1, status=400, error_type="invalid_request_error", path_prefix="/v1/refunds"
    )
    note = env.make_refund(str(owed.id))  # no exception: a retry would be refused again
    assert note.startswith("failed: ")
    [after] = env.owed(booking.id)
    assert after.status == RefundStatus.FAILED
    assert after.settled_at is not None
    assert after.last_error
    assert after.last_error.startswith("PaymentProviderError")
    assert env.make_refund(str(owed.id)) == "already failed"
    assert [t.kind for t in env.ledger(booking.id)] == ["PAYMENT"]
    assert not [n for n in env.notes(booking.id) if n.kind == "PAYMENT_REFUNDED"]
    assert env.emulator.refunds_of(paid["id"]) == []


def test_a_refund_stripe_already_has_is_looked_up_not_asked_again(env: Env, world: World) -> None:
    """Stripe answered `pending` earlier (the row keeps its id, still owed): the next run
    retrieves the refund instead of creating one."""
    booking, paid, owed = _owe_late_refund(env, world)
    made = env.emulator.refund_payment_intent(paid["id"])
    with transaction(env.sessions) as session:
        session.execute(
            update(Refund).where(Refund.id == owed.id).values(stripe_refund_id=made["id"])
        )
    env.emulator.clear()

    assert env.make_refund(str(owed.id)) == f"refund {made['id']} succeeded"
    assert env.emulator.requests_to("/v1/refunds", "POST") == []
    assert [r.path for r in env.emulator.requests_to("/v1/refunds", "GET")] == [
        f"/v1/refunds/{made['id']}"
    ]
    assert env.owed(booking.id)[0].status == RefundStatus.SUCCEEDED
    assert sorted(t.kind for t in env.ledger(booking.id)) == ["PAYMENT", "REFUND"]


@pytest.mark.parametrize("first", ["our answer", "charge.refunded"])
def test_the_ledger_counts_a_refund_once_whichever_report_comes_first(
    env: Env, world: World, first: str
) -> None:
    """Whether charge.refunded (the running total only: the charge's refunds are listed
    from Stripe) is applied before or after the answer to our own request is recorded,
    the ledger counts the refund once and the client is told once."""
    booking, paid, owed = _owe_late_refund(env, world)

    def charge_refunded() -> str:
        env.gateway.refund_in_full(  # Stripe has the refund before either report
            RefundRequest(
                paid["id"],
                booking.id,
                RefundReason.LATE_PAYMENT,
                owed.idempotency_key,
            )
        )
        return env.apply(env.emulator.charge_refunded_event(paid["id"]))

    if first == "charge.refunded":
        assert charge_refunded() == "1 refund(s) recorded"
        env.make_refund(str(owed.id))
    else:
        env.make_refund(str(owed.id))
        assert charge_refunded() == "0 refund(s) recorded"
    refunded = [t.amount_minor for t in env.ledger(booking.id) if t.kind == "REFUND"]
    assert refunded == [5000]
    assert len(env.emulator.refunds_of(paid["id"])) == 1
    [after] = env.owed(booking.id)
    assert (after.status, after.stripe_refund_id) == (
        RefundStatus.SUCCEEDED,
        refunded_id(env, paid),
    )
    assert env.booking(booking.id).amount_refunded_minor == 5000
    assert [n.kind for n in env.notes(booking.id)].count("PAYMENT_REFUNDED") == 1


def test_the_sweeper_enqueues_owed_refunds_whose_task_was_lost(env: Env, world: World) -> None:
    booking, _, owed = _owe_late_refund(env, world)
    now = datetime.now(UTC)
    assert not refunds.redeliver_pending(env.resources, now=now)  # its task may be running
    later = now + refunds.REDELIVERY_AFTER + timedelta(seconds=1)
    assert refunds.redeliver_pending(env.resources, now=later).refunds == (owed.id,)
    # Touched by that sweep: the next ones leave it to the task they enqueued.
    assert not refunds.redeliver_pending(env.resources, now=later + timedelta(seconds=1))
    env.effects.run(refunds.redeliver_pending(env.resources, now=later + timedelta(minutes=6)))
    env.make_owed_refunds()
    assert env.owed(booking.id)[0].status == RefundStatus.SUCCEEDED
    much_later = later + timedelta(hours=1)
    assert not refunds.redeliver_pending(env.resources, now=much_later)  # settled


# --- the operator CLI -----------------------------------------------------------------------


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    stripe_emulator: StripeEmulator,
    celery_queue_name: str,
) -> None:
    environ = support.base_env(
        database_url,
        STRIPE_API_BASE=stripe_emulator.url,
        STRIPE_MAX_RETRIES="0",
        STRIPE_TIMEOUT_SECONDS="2",
        CELERY_QUEUE=celery_queue_name,
        DATABASE_LOCK_TIMEOUT_MS="200",
    )
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    # Not a developer's running `make run`: its var/run.env stays out of the test.
    monkeypatch.setenv("INKFLOW_RUN_ENV", str(support.ROOT / "var" / "no-such-run.env"))


def _lines(capsys: pytest.CaptureFixture[str]) -> list[JSON]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


@contextmanager
def booking_locked(env: Env, booking: Booking) -> Iterator[None]:
    """Another transaction holds the booking's row (a slow writer): applying its events
    meanwhile fails on lock_timeout, a transient failure."""
    with transaction(env.sessions) as holder:
        holder.execute(select(Booking.id).where(Booking.id == booking.id).with_for_update())
        yield


def test_cli_lists_unprocessed_and_failed_events_and_replays_them(
    env: Env, world: World, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    first = env.book(world)
    second = env.book(world, START + timedelta(hours=2))
    assert first.payment_intent_id
    assert second.payment_intent_id
    received = env.event(
        "payment_intent.succeeded", env.emulator.succeed_payment_intent(first.payment_intent_id)
    )
    env.store(received)  # stored, never applied (its task was lost)
    failing = env.event(
        "payment_intent.succeeded", env.emulator.succeed_payment_intent(second.payment_intent_id)
    )
    env.store(failing)
    impatient = build_resources(replace(env.resources.settings, database_lock_timeout_ms=200))
    try:
        with booking_locked(env, second), pytest.raises(OperationalError):
            apply_event(impatient, failing["id"], now=datetime.now(UTC), stripe=env.gateway)
    finally:
        impatient.close()
    done = env.event("customer.created", {"id": "cus_1"})
    env.apply(done)

    assert cli.main(["events", "list", "--json"]) == 0
    listed = {row["id"]: row for row in _lines(capsys)}
    assert set(listed) == {received["id"], failing["id"]}
    assert listed[received["id"]]["status"] == "RECEIVED"
    assert listed[failing["id"]]["status"] == "FAILED"
    assert listed[failing["id"]]["lastError"].startswith("OperationalError")
    assert "LockNotAvailable" in listed[failing["id"]]["lastError"]
    assert cli.main(["events", "list", "--status", "IGNORED", "--json"]) == 0
    assert [row["id"] for row in _lines(capsys)] == [done["id"]]
    assert cli.main(["events", "list"]) == 0  # for people: a table
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "TYPE", "STATUS", "ATTEMPTS", "RECEIVEDAT", "LASTERROR"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted([received["id"], failing["id"]])

    assert cli.main(["events", "replay", "--json", received["id"], done["id"]]) == 0
    assert _lines(capsys) == [
        {"id": received["id"], "outcome": "confirmed"},
        {"id": done["id"], "outcome": "already ignored"},
    ]
    assert env.booking(first.id).status == BookingStatus.CONFIRMED

    assert cli.main(["events", "replay", "--all-unprocessed", "--json"]) == 0
    assert _lines(capsys) == [{"id": failing["id"], "outcome": "confirmed"}]
    assert env.booking(second.id).status == BookingStatus.CONFIRMED
    assert cli.main(["events", "list"]) == 0
    assert capsys.readouterr().out == "no unprocessed events\n"


def test_cli_replay_reports_a_failure_with_exit_status_1(
    env: Env, world: World, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    booking = env.book(world)
    assert booking.payment_intent_id
    paid = env.emulator.succeed_payment_intent(booking.payment_intent_id)
    payload = env.event("payment_intent.succeeded", paid)
    env.store(payload)
    with booking_locked(env, booking):
        assert cli.main(["events", "replay", "--json", payload["id"]]) == 1
    captured = capsys.readouterr()
    [row] = [json.loads(line) for line in captured.out.splitlines()]
    assert captured.err == f"inkflow: 1 event(s) failed: {payload['id']}\n"
    assert row["outcome"].startswith("failed: OperationalError")
    assert env.inbox(payload["id"]).status == EventStatus.FAILED
    assert env.booking(booking.id).status == BookingStatus.PENDING_PAYMENT
