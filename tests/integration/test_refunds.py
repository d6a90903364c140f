"""Refunds as Stripe reports them, from any source: events signed with Stripe's scheme and
posted to POST /api/webhooks/stripe (the Flask app), then applied as the worker does
(the tasks' use cases, in order, with their effects); the Stripe emulator over HTTP with
the real SDK; real PostgreSQL.

Covered: full and partial refunds from the Dashboard, two refunds on one charge, payloads
with the running total only, duplicates and every order of delivery → ledger rows, the
deposit status and one e-mail per refund; our own refund and Stripe's report converging
whichever comes first (even when the answer to our request was lost); the parameters of
every refund we ask for; a refund failing later, failing at once, refused → REFUND_FAILED,
logged at ERROR, listed by `inkflow refunds list --failed`, cleared by `inkflow refunds
retry`."""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from services.cli import main as cli
from shared.adapters.db import transaction
from shared.adapters.models import (
    Booking,
    BookingStatus,
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
    StripeGateway,
    TransientPaymentError,
    refund_idempotency_key,
)
from shared.adapters.runtime import Resources, build_resources
from shared.config import Settings
from shared.tasks import APPLY_STRIPE_EVENT, PROCESS_REFUND
from shared.usecases import refunds
from shared.usecases.effects import EffectRunner
from shared.usecases.stripe_events import apply_event
from tests import support
from tests.factories import World, make_world
from tests.fakes.queue import RecordingQueue

JSON = dict[str, Any]
WEBHOOK = "/api/webhooks/stripe"


@dataclass
class Stack:
    """The API (Flask test client) and what the worker would run, on one recording queue."""

    http: FlaskClient
    queue: RecordingQueue
    resources: Resources
    gateway: StripeGateway
    emulator: StripeEmulator
    done: int = 0  # messages of the queue already run

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.resources.sessions

    def work(self) -> list[str]:
        """Run what was enqueued (and what that enqueues), as the worker's tasks do."""
        notes = []
        effects = EffectRunner(self.queue, self.gateway)
        while self.done < len(self.queue.sent):
            name, args = self.queue.sent[self.done]
            self.done += 1
            if name == APPLY_STRIPE_EVENT:
                outcome = apply_event(
                    self.resources, args[0], now=datetime.now(UTC), stripe=self.gateway
                )
            elif name == PROCESS_REFUND:
                outcome = refunds.make(
                    self.resources, self.gateway, uuid.UUID(args[0]), now=datetime.now(UTC)
                )
            else:
                continue  # mails: their sending is the outbox's business
            effects.run(outcome.effects)
            notes.append(outcome.note)
        return notes

    def deliver(self, *payloads: JSON) -> list[str]:
        """Stripe posts each event (signed, raw JSON); then the worker runs."""
        for payload in payloads:
            body = json.dumps(payload)
            header = stripe.WebhookSignature.generate_signature_header(body, support.WEBHOOK_SECRET)
            answer = self.http.post(
                WEBHOOK,
                data=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.get_data(as_text=True)
        return self.work()

    def book(self, world: World, start: datetime) -> JSON:
        answer = self.http.post(
            "/api/bookings/create",
            json=world.booking(start),
        )
        assert answer.status_code == 201, answer.get_data(as_text=True)
        booking: JSON = answer.get_json()["booking"]
        return booking

    def paid_booking(self, world: World, start: datetime) -> tuple[uuid.UUID, str]:
        """A CONFIRMED booking: the client paid, Stripe said so."""
        booking = self.book(world, start)
        paid = self.emulator.succeed_payment_intent(booking["paymentIntentId"])
        assert self.deliver(self.emulator.event("payment_intent.succeeded", paid)) == ["confirmed"]
        return uuid.UUID(booking["id"]), str(paid["id"])

    def owe(self, booking_id: uuid.UUID, reason: RefundReason) -> uuid.UUID:
        """What a cancellation does (the lifecycle's use cases): deposit REFUND_PENDING and
        a refund owed in the same transaction, made after the commit by its task."""
        with transaction(self.sessions) as session:
            booking = session.scalar(
                select(Booking).where(Booking.id == booking_id).with_for_update()
            )
            assert booking is not None
            booking.deposit_status = DepositStatus.REFUND_PENDING
            effects = refunds.owe(session, booking, reason, now=datetime.now(UTC))
        EffectRunner(self.queue, self.gateway).run(effects)
        [owed] = effects.refunds
        return owed

    def failed_deposits(self) -> list[str]:
        """The operator's booking list filtered on depositStatus=REFUND_FAILED."""
        answer = self.http.get(
            "/api/admin/bookings?depositStatus=REFUND_FAILED",
            headers={"Authorization": f"Bearer {support.ADMIN_TOKEN}"},
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return [b["id"] for b in answer.get_json()["items"]]

    # what the database says
    def booking(self, booking_id: uuid.UUID) -> Booking:
        with transaction(self.sessions) as session:
            found = session.get(Booking, booking_id)
            assert found is not None
            return found

    def ledger_refunds(self, booking_id: uuid.UUID) -> list[tuple[str, str, int]]:
        with transaction(self.sessions) as session:
            rows = session.scalars(
                select(StripeTransaction).where(
                    StripeTransaction.booking_id == booking_id, StripeTransaction.kind == "REFUND"
                )
            )
            return sorted((t.stripe_object_id, t.status, t.amount_minor) for t in rows)

    def refund_mails(self, booking_id: uuid.UUID) -> list[str]:
        """The occasions of the booking's PAYMENT_REFUNDED e-mails (one per refund)."""
        with transaction(self.sessions) as session:
            rows = session.scalars(
                select(Notification).where(
                    Notification.booking_id == booking_id,
                    Notification.kind == "PAYMENT_REFUNDED",
                )
            )
            return sorted(n.occasion for n in rows)

    def ours(self, booking_id: uuid.UUID) -> list[Refund]:
        with transaction(self.sessions) as session:
            return list(
                session.scalars(
                    select(Refund)
                    .where(Refund.booking_id == booking_id)
                    .order_by(Refund.created_at)
                )
            )


@pytest.fixture
def stack(
    make_app: Callable[..., Flask], settings: Settings, stripe_emulator: StripeEmulator
) -> Iterator[Stack]:
    queue = RecordingQueue()
    # A platform fee, so that deposits carry an application fee to give back.
    app = make_app(queue=queue, platform_fee_bps=1000)
    # A short Stripe timeout: an answer the emulator delays past it is lost.
    gateway = StripeGateway(replace(settings, stripe_timeout_seconds=0.5))
    resources = build_resources(settings, pool_size=4)
    yield Stack(app.test_client(), queue, resources, gateway, stripe_emulator)
    stripe_emulator.reset_failures()
    resources.close()


@pytest.fixture
def world(stack: Stack) -> World:
    return make_world(stack.sessions)


_SLOTS = itertools.count()


def a_slot() -> datetime:
    """A start free of the other tests' bookings (one per hour, from 3 days ahead)."""
    n = next(_SLOTS)
    day = datetime.now(UTC).date() + timedelta(days=3 + n // 6)
    return datetime(day.year, day.month, day.day, 10 + n % 6, tzinfo=UTC)


def emitted(stack: Stack, intent_id: str, type_: str | None = None) -> list[JSON]:
    """What Stripe sent about the intent's refunds (not the payment's own events)."""
    return stack.emulator.emitted_events(type_, payment_intent=intent_id, about_refunds=True)


# --- from the Dashboard ---------------------------------------------------------------------


def test_a_full_refund_from_the_dashboard_refunds_the_deposit_and_keeps_the_booking(
    stack: Stack, world: World
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    refund = stack.emulator.refund_payment_intent(intent_id)  # all of it, in the Dashboard

    # Stripe sends refund.created (not handled: stored as ignored) and charge.refunded.
    sent = emitted(stack, intent_id)
    assert [e["type"] for e in sent] == ["refund.created", "charge.refunded"]
    assert "refunds" not in sent[1]["data"]["object"]  # the running total only
    assert stack.deliver(*sent) == ["1 refund(s) recorded"]

    after = stack.booking(booking_id)
    # A refund never changes the booking's status: the operator may cancel it.
    assert after.status == BookingStatus.CONFIRMED
    assert (after.deposit_status, after.amount_refunded_minor) == (DepositStatus.REFUNDED, 5000)
    assert stack.ledger_refunds(booking_id) == [(refund["id"], "SUCCEEDED", 5000)]
    assert stack.refund_mails(booking_id) == [refund["id"]]
    with transaction(stack.sessions) as session:
        created = session.get(StripeEvent, sent[0]["id"])
        assert created is not None
        assert created.status == EventStatus.IGNORED


def test_two_partial_refunds_from_the_dashboard_each_told_once(stack: Stack, world: World) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    first = stack.emulator.refund_payment_intent(intent_id, 1500)
    assert stack.deliver(*emitted(stack, intent_id, "charge.refunded")) == ["1 refund(s) recorded"]
    after = stack.booking(booking_id)
    assert (after.deposit_status, after.amount_refunded_minor) == (
        DepositStatus.PARTIALLY_REFUNDED,
        1500,
    )
    assert stack.refund_mails(booking_id) == [first["id"]]

    second = stack.emulator.refund_payment_intent(intent_id, 3500)
    [_, latest] = emitted(stack, intent_id, "charge.refunded")
    assert latest["data"]["object"]["amount_refunded"] == 5000
    assert latest["data"]["previous_attributes"]["amount_refunded"] == 1500
    assert stack.deliver(latest) == ["1 refund(s) recorded"]

    after = stack.booking(booking_id)
    assert (after.status, after.deposit_status, after.amount_refunded_minor) == (
        BookingStatus.CONFIRMED,
        DepositStatus.REFUNDED,
        5000,
    )
    assert stack.ledger_refunds(booking_id) == sorted(
        [(first["id"], "SUCCEEDED", 1500), (second["id"], "SUCCEEDED", 3500)]
    )
    assert stack.refund_mails(booking_id) == sorted([first["id"], second["id"]])


@pytest.mark.parametrize(
    "when", ["each refund's events as it happens", "all events once both refunds exist"]
)
def test_every_order_of_two_refunds_events_delivered_twice_gives_the_same_state(
    stack: Stack, when: str
) -> None:
    """Two Dashboard refunds: their four events (refund.created and the running-total-only
    charge.refunded of each) in every order, each delivered twice, and — in the first
    case — the first refund's events delivered before the second refund exists."""
    world = make_world(stack.sessions)
    results = set()
    for order in itertools.permutations(range(4)):
        booking_id, intent_id = stack.paid_booking(world, a_slot())
        made = [stack.emulator.refund_payment_intent(intent_id, 1500)]
        if when.startswith("each"):
            stack.deliver(*emitted(stack, intent_id))
        made.append(stack.emulator.refund_payment_intent(intent_id, 2000))
        events = emitted(stack, intent_id)
        assert [e["type"] for e in events] == ["refund.created", "charge.refunded"] * 2
        for index in [*order, *reversed(order)]:
            stack.deliver(events[index])

        after = stack.booking(booking_id)
        by_id = {r["id"]: n for n, r in enumerate(made)}
        ledger = tuple(sorted((by_id[i], s, a) for i, s, a in stack.ledger_refunds(booking_id)))
        mails = tuple(sorted(by_id[i] for i in stack.refund_mails(booking_id)))
        results.add(
            (after.status, after.deposit_status, after.amount_refunded_minor, ledger, mails)
        )
    assert results == {
        (
            BookingStatus.CONFIRMED,
            DepositStatus.PARTIALLY_REFUNDED,
            3500,
            ((0, "SUCCEEDED", 1500), (1, "SUCCEEDED", 2000)),
            (0, 1),
        )
    }


# --- our own refunds ------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(RefundReason))
def test_every_refund_we_ask_for_reverses_the_transfer_and_the_fee_under_a_key_of_its_own(
    stack: Stack, world: World, reason: RefundReason
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    stack.emulator.clear()
    stack.owe(booking_id, reason)
    [note] = stack.work()
    assert note.endswith(" succeeded")

    [request] = stack.emulator.requests_to("/v1/refunds", "POST")
    assert request.params == {
        "payment_intent": intent_id,
        "reverse_transfer": "true",
        "refund_application_fee": "true",
        "metadata": {"bookingId": str(booking_id), "reason": reason.lower()},
    }
    assert request.idempotency_key == refund_idempotency_key(booking_id, reason)
    action = reason.lower().replace("_", "-")
    assert request.idempotency_key in (
        f"inkflow-refund-{action}-{booking_id}",
        f"inkflow-late-refund-{booking_id}",  # the late payment's, older than the others
    )
    # The artist gave back what they received, the platform its fee.
    transfer, fee = stack.emulator.transfer(intent_id), stack.emulator.application_fee(intent_id)
    assert transfer is not None
    assert (transfer["amount"], transfer["amount_reversed"], transfer["reversed"]) == (
        5000,
        5000,
        True,
    )
    assert fee is not None
    assert (fee["amount"], fee["amount_refunded"]) == (500, 500)
    after = stack.booking(booking_id)
    assert (after.deposit_status, after.amount_refunded_minor) == (DepositStatus.REFUNDED, 5000)
    [refund] = stack.emulator.refunds_of(intent_id)
    assert stack.refund_mails(booking_id) == [refund["id"]]


@pytest.mark.parametrize("first", ["our answer", "Stripe's webhook"])
def test_our_refund_and_stripes_report_converge_whichever_comes_first(
    stack: Stack, world: World, first: str
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    owed = stack.owe(booking_id, RefundReason.CLIENT_CANCEL)
    if first == "our answer":
        assert stack.work()[0].endswith(" succeeded")
        assert stack.deliver(*emitted(stack, intent_id, "charge.refunded")) == [
            "0 refund(s) recorded"
        ]
    else:
        # Stripe made the refund but its answer was lost (the client timed out): the task
        # will retry; meanwhile Stripe's charge.refunded arrives.
        stack.emulator.delay_next(1.0, path_prefix="/v1/refunds", method="POST")
        stack.done = len(stack.queue.sent)  # the task's first attempt is this one:
        with pytest.raises(TransientPaymentError):
            refunds.make(stack.resources, stack.gateway, owed, now=datetime.now(UTC))
        [pending] = stack.ours(booking_id)
        assert (pending.status, pending.stripe_refund_id) == (RefundStatus.PENDING, None)
        assert stack.deliver(*emitted(stack, intent_id, "charge.refunded")) == [
            "1 refund(s) recorded"
        ]
        # The retried task finds it settled and does not ask Stripe again.
        stack.emulator.clear()
        assert refunds.make(stack.resources, stack.gateway, owed, now=datetime.now(UTC)).note == (
            "already succeeded"
        )
        assert stack.emulator.requests_to("/v1/refunds") == []

    [refund] = stack.emulator.refunds_of(intent_id)
    [ours] = stack.ours(booking_id)
    assert (ours.status, ours.stripe_refund_id) == (RefundStatus.SUCCEEDED, refund["id"])
    assert ours.settled_at is not None
    after = stack.booking(booking_id)
    assert (after.status, after.deposit_status, after.amount_refunded_minor) == (
        BookingStatus.CONFIRMED,
        DepositStatus.REFUNDED,
        5000,
    )
    assert stack.ledger_refunds(booking_id) == [(refund["id"], "SUCCEEDED", 5000)]
    assert stack.refund_mails(booking_id) == [refund["id"]]


# --- failures -------------------------------------------------------------------------------


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
    )
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    # Not a developer's running `make run`: its var/run.env stays out of the test.
    monkeypatch.setenv("INKFLOW_RUN_ENV", str(support.ROOT / "var" / "no-such-run.env"))


def cli_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[JSON]]:
    status = cli.main([*argv, "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return status, lines


def test_a_refund_that_fails_at_stripe_later_is_refund_failed_listed_and_retried_once(
    stack: Stack,
    world: World,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    stack.emulator.fail_next_refunds(1, reason="expired_or_canceled_card")
    owed = stack.owe(booking_id, RefundReason.ARTIST_CANCEL)
    [note] = stack.work()
    assert note.endswith(" pending")  # taken on: the client is told it is on its way
    [doomed] = stack.emulator.refunds_of(intent_id)
    assert stack.booking(booking_id).deposit_status == DepositStatus.REFUND_PENDING
    assert stack.refund_mails(booking_id) == [doomed["id"]]

    with caplog.at_level(logging.ERROR, logger="inkflow.refunds"):
        sent = stack.emulator.settle_refunds()  # days later, at Stripe
        assert [e["type"] for e in sent] == ["refund.updated", "refund.failed"]
        assert stack.deliver(*sent, *sent) == [
            "0 refund(s) recorded, 1 failed",
            "0 refund(s) recorded",
        ]

    [failed] = stack.ours(booking_id)
    assert (failed.id, failed.status, failed.stripe_refund_id) == (
        owed,
        RefundStatus.FAILED,
        doomed["id"],
    )
    assert failed.last_error == "Stripe: failed (expired_or_canceled_card)"
    after = stack.booking(booking_id)
    assert (after.status, after.deposit_status, after.amount_refunded_minor) == (
        BookingStatus.CONFIRMED,
        DepositStatus.REFUND_FAILED,
        0,
    )
    assert stack.ledger_refunds(booking_id) == [(doomed["id"], "FAILED", 5000)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert doomed["id"] in errors[0]
    assert "expired_or_canceled_card" in errors[0]
    assert stack.failed_deposits() == [str(booking_id)]

    # The operator sees it ...
    status, listed = cli_lines(capsys, "refunds", "list", "--failed")
    assert status == 0
    assert [(r["refundId"], r["bookingId"], r["stripeRefundId"]) for r in listed] == [
        (str(owed), str(booking_id), doomed["id"])
    ]
    assert listed[0] | {"updatedAt": None} == {
        "refundId": str(owed),
        "bookingId": str(booking_id),
        "stripeRefundId": doomed["id"],
        "madeBy": "inkflow",
        "reason": "ARTIST_CANCEL",
        "status": "FAILED",
        "amount": "50.00",
        "currency": "eur",
        "attempts": 1,
        "lastError": "Stripe: failed (expired_or_canceled_card)",
        "depositStatus": "REFUND_FAILED",
        "updatedAt": None,
    }
    # ... and asks again: a new refund of what is left, under a key of its own.
    status, retried = cli_lines(capsys, "refunds", "retry", str(owed))
    assert status == 0
    [row] = retried
    assert row["outcome"].endswith(" succeeded")
    first, retry = stack.ours(booking_id)
    status, retried_again = cli_lines(capsys, "refunds", "retry", str(owed))
    assert (status, retried_again[0]["outcome"]) == (
        0,
        f"already retried: refund {retry.id} is SUCCEEDED",
    )
    status, not_failed = cli_lines(capsys, "refunds", "retry", str(retry.id))
    assert (status, not_failed[0]["outcome"]) == (
        1,
        f"failed: refund {retry.id} is SUCCEEDED, not FAILED",
    )

    assert (first.status, retry.status) == (RefundStatus.FAILED, RefundStatus.SUCCEEDED)
    assert retry.idempotency_key == f"{first.idempotency_key}-retry-{first.id}"
    made = stack.emulator.refunds_of(intent_id)
    assert [(r["status"], r["amount"]) for r in made] == [("failed", 5000), ("succeeded", 5000)]
    after = stack.booking(booking_id)
    assert (after.deposit_status, after.amount_refunded_minor) == (DepositStatus.REFUNDED, 5000)
    assert stack.refund_mails(booking_id) == sorted(r["id"] for r in made)
    # Made good: no longer an operator's business; still in the full list.
    assert cli_lines(capsys, "refunds", "list", "--failed") == (0, [])
    status, everything = cli_lines(capsys, "refunds", "list", "--booking", str(booking_id))
    assert [(r["refundId"], r["status"]) for r in everything] == [
        (str(retry.id), "SUCCEEDED"),
        (str(owed), "FAILED"),
    ]
    # The same failure delivered again changes nothing (nor applied again, by a replay).
    assert stack.deliver(*sent) == []
    for event in sent:
        stack.queue.sent.append((APPLY_STRIPE_EVENT, (event["id"],)))
    assert stack.work() == ["already processed"] * 2
    assert stack.booking(booking_id).deposit_status == DepositStatus.REFUNDED
    assert stack.failed_deposits() == []


def test_a_refund_answered_failed_at_once_is_refund_failed_and_nobody_is_told_it_was_made(
    stack: Stack, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    stack.emulator.fail_next_refunds(1, reason="lost_or_stolen_card", at_once=True)
    stack.owe(booking_id, RefundReason.CLIENT_CANCEL)
    with caplog.at_level(logging.ERROR, logger="inkflow.refunds"):
        [note] = stack.work()
    assert note.endswith(" failed")
    [refund] = stack.emulator.refunds_of(intent_id)
    [ours] = stack.ours(booking_id)
    assert (ours.status, ours.stripe_refund_id) == (RefundStatus.FAILED, refund["id"])
    assert stack.booking(booking_id).deposit_status == DepositStatus.REFUND_FAILED
    assert stack.ledger_refunds(booking_id) == [(refund["id"], "FAILED", 5000)]
    assert stack.refund_mails(booking_id) == []
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    with transaction(stack.sessions) as session:
        [tx] = session.scalars(
            select(StripeTransaction).where(StripeTransaction.stripe_object_id == refund["id"])
        )
        assert (tx.failure_code, tx.stripe_event_id) == ("lost_or_stolen_card", None)


def test_a_refused_refund_is_refund_failed(
    stack: Stack, world: World, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    booking_id, _ = stack.paid_booking(world, a_slot())
    stack.emulator.fail_next(
        1, status=400, error_type="invalid_request_error", path_prefix="/v1/refunds"
    )
    owed = stack.owe(booking_id, RefundReason.OPERATOR_CANCEL)
    [note] = stack.work()
    assert note.startswith("failed: ")
    [ours] = stack.ours(booking_id)
    assert (ours.status, ours.stripe_refund_id) == (RefundStatus.FAILED, None)
    assert stack.booking(booking_id).deposit_status == DepositStatus.REFUND_FAILED
    assert stack.ledger_refunds(booking_id) == []
    _, listed = cli_lines(capsys, "refunds", "list", "--failed")
    assert [(r["refundId"], r["stripeRefundId"]) for r in listed] == [(str(owed), None)]


def test_a_dashboard_refund_that_fails_is_refund_failed_and_listed_as_made_elsewhere(
    stack: Stack, world: World, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    refund = stack.emulator.refund_payment_intent(intent_id, 2000)
    stack.deliver(*emitted(stack, intent_id))
    assert stack.booking(booking_id).deposit_status == DepositStatus.PARTIALLY_REFUNDED

    # Stripe reports its failure; the refund.failed comes first, refund.updated later.
    updated, failed = stack.emulator.fail_refund(refund["id"], "declined")
    stack.deliver(failed, updated)

    after = stack.booking(booking_id)
    assert (after.deposit_status, after.amount_refunded_minor) == (DepositStatus.REFUND_FAILED, 0)
    assert stack.ledger_refunds(booking_id) == [
        (refund["id"], "FAILED", 2000),
        (refund["id"], "SUCCEEDED", 2000),
    ]
    assert stack.failed_deposits() == [str(booking_id)]
    _, listed = cli_lines(capsys, "refunds", "list", "--failed")
    assert [(r["refundId"], r["madeBy"], r["stripeRefundId"], r["status"]) for r in listed] == [
        (None, "elsewhere", refund["id"], "FAILED")
    ]
    assert listed[0]["lastError"] == "Stripe: failed (declined)"

    # The operator refunds it again in the Dashboard: made good.
    stack.emulator.refund_payment_intent(intent_id, 2000)
    stack.deliver(*emitted(stack, intent_id, "charge.refunded")[-1:])
    after = stack.booking(booking_id)
    assert (after.deposit_status, after.amount_refunded_minor) == (
        DepositStatus.PARTIALLY_REFUNDED,
        2000,
    )
    assert cli_lines(capsys, "refunds", "list", "--failed") == (0, [])


def test_a_late_failure_report_never_undoes_a_failure_seen_first(
    stack: Stack, world: World
) -> None:
    """refund.updated (pending → succeeded) delivered after the refund failed: still failed."""
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    stack.emulator.pend_next_refunds(1)
    refund = stack.emulator.refund_payment_intent(intent_id)
    [succeeded] = stack.emulator.settle_refunds()
    assert succeeded["data"]["object"]["status"] == "succeeded"
    updated, failed = stack.emulator.fail_refund(refund["id"])
    stack.deliver(failed, updated, succeeded, *emitted(stack, intent_id, "charge.refunded"))
    after = stack.booking(booking_id)
    assert (after.deposit_status, after.amount_refunded_minor) == (DepositStatus.REFUND_FAILED, 0)


def test_stripe_not_answering_the_list_fails_the_event_for_a_retry(
    stack: Stack, world: World
) -> None:
    booking_id, intent_id = stack.paid_booking(world, a_slot())
    before = stack.booking(booking_id).deposit_status
    stack.emulator.refund_payment_intent(intent_id, 1000)
    [charge_refunded] = emitted(stack, intent_id, "charge.refunded")
    stack.emulator.fail_next(1, status=503, path_prefix="/v1/refunds", method="GET")
    with pytest.raises(TransientPaymentError):
        stack.deliver(charge_refunded)
    with transaction(stack.sessions) as session:
        event = session.get(StripeEvent, charge_refunded["id"])
        assert event is not None
        assert event.status == EventStatus.FAILED
        assert event.last_error is not None
        assert event.last_error.startswith("TransientPaymentError")
    assert stack.booking(booking_id).deposit_status == before
    # The task's retry applies it.
    stack.queue.sent.append((APPLY_STRIPE_EVENT, (charge_refunded["id"],)))
    assert stack.work() == ["1 refund(s) recorded"]
    assert stack.booking(booking_id).deposit_status == DepositStatus.PARTIALLY_REFUNDED


def test_a_refund_of_a_charge_we_do_not_know_is_ignored(stack: Stack, world: World) -> None:
    client = stripe.StripeClient("sk_test_other", base_addresses={"api": stack.emulator.url})
    pi = client.v1.payment_intents.create({"amount": 2000, "currency": "eur"})  # no booking's
    stack.emulator.succeed_payment_intent(pi.id)
    stack.emulator.refund_payment_intent(pi.id)
    [charge_refunded] = emitted(stack, pi.id, "charge.refunded")
    assert stack.deliver(charge_refunded) == [
        f"no booking for charge {charge_refunded['data']['object']['id']}"
    ]
    with transaction(stack.sessions) as session:
        event = session.get(StripeEvent, charge_refunded["id"])
        assert event is not None
        assert event.status == EventStatus.IGNORED
