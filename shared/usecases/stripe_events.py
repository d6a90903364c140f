"""Applying verified Stripe events from the inbox: the state machine per event type.

One transaction per event with the inbox row locked (FOR UPDATE), so two workers never
apply one event together and a redelivery finds it PROCESSED. Bookings are locked too,
so events of one booking apply one after the other. Every write is conditional or
ON CONFLICT DO NOTHING: any order, any number of deliveries, the same final state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.adapters.db import advisory_xact_lock, transaction
from shared.adapters.models import (
    Artist,
    Booking,
    BookingStatus,
    EventStatus,
    NotificationKind,
    StripeEvent,
    StripeTransaction,
    TransactionKind,
    TransactionStatus,
)
from shared.adapters.payments import PaymentProviderError, StripeGateway
from shared.adapters.queue import TaskQueue
from shared.adapters.runtime import Resources
from shared.domain.money import to_minor_units
from shared.domain.timeutil import utcnow
from shared.tasks import SEND_NOTIFICATION
from shared.usecases.booking import claim_slot, is_overlap_violation
from shared.usecases.notifications import notify_booking

log = logging.getLogger("inkflow.stripe_events")


@dataclass
class Applied:
    """What a handler did: a note for the inbox row and outbox rows to send after commit."""

    note: str
    outbox: list[uuid.UUID] = field(default_factory=list)
    ignored: bool = False
    problem: str | None = None  # kept on the inbox row for operators
    # Intents of stale holds this event expired: cancelled on Stripe after commit.
    cancel_intents: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    session: Session
    gateway: StripeGateway
    event: StripeEvent
    now: datetime

    @property
    def obj(self) -> dict[str, Any]:
        data: dict[str, Any] = self.event.payload["data"]["object"]
        return data


# --- helpers -------------------------------------------------------------------------


def _booking_for_intent(session: Session, intent: dict[str, Any]) -> Booking | None:
    metadata = intent.get("metadata") or {}
    booking_id = metadata.get("bookingId")
    query = select(Booking).with_for_update()
    parsed: uuid.UUID | None = None
    if isinstance(booking_id, str):
        try:
            parsed = uuid.UUID(booking_id)
        except ValueError:
            parsed = None
    if parsed is not None:
        booking = session.scalar(query.where(Booking.id == parsed))
        if booking is not None:
            return booking
    return session.scalar(query.where(Booking.payment_intent_id == intent.get("id")))


def _record(
    ctx: Context,
    booking: Booking | None,
    *,
    kind: TransactionKind,
    status: TransactionStatus,
    amount_minor: int,
    currency: str,
    object_id: str,
    intent_id: str | None,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> bool:
    """One ledger row; a second delivery of the same fact inserts nothing. Successes are
    unique per Stripe object and kind (one event may carry several refunds); failed
    attempts per event (the same intent may fail several times)."""
    inserted = ctx.session.execute(
        insert(StripeTransaction)
        .values(
            id=uuid.uuid4(),
            booking_id=booking.id if booking else None,
            kind=kind,
            status=status,
            amount_minor=amount_minor,
            currency=currency.lower(),
            stripe_object_id=object_id,
            payment_intent_id=intent_id,
            stripe_event_id=ctx.event.id,
            failure_code=failure_code,
            failure_message=failure_message,
        )
        .on_conflict_do_nothing()
        .returning(StripeTransaction.id)
    ).first()
    return inserted is not None


def _mismatch(booking: Booking, intent: dict[str, Any], artist: Artist) -> str | None:
    expected_amount = to_minor_units(booking.deposit_amount, booking.currency)
    if booking.payment_intent_id and booking.payment_intent_id != intent.get("id"):
        return f"intent {intent.get('id')} is not the booking's {booking.payment_intent_id}"
    if intent.get("amount") != expected_amount:
        return f"amount {intent.get('amount')} != expected {expected_amount}"
    if str(intent.get("currency", "")).lower() != booking.currency.lower():
        return f"currency {intent.get('currency')} != expected {booking.currency}"
    destination = (intent.get("transfer_data") or {}).get("destination")
    if destination != artist.stripe_account_id:
        return f"destination {destination} != artist account {artist.stripe_account_id}"
    return None


def _confirm(booking: Booking, now: datetime) -> None:
    booking.status = BookingStatus.CONFIRMED
    booking.confirmed_at = now


# --- handlers ------------------------------------------------------------------------


def payment_succeeded(ctx: Context) -> Applied:
    intent = ctx.obj
    intent_id = str(intent["id"])
    booking = _booking_for_intent(ctx.session, intent)
    if booking is None:
        return Applied(f"no booking for intent {intent_id}", ignored=True)
    artist = ctx.session.get(Artist, booking.artist_id)
    assert artist is not None
    received = int(intent.get("amount_received") or intent.get("amount") or 0)
    _record(
        ctx,
        booking,
        kind=TransactionKind.PAYMENT,
        status=TransactionStatus.SUCCEEDED,
        amount_minor=received,
        currency=str(intent.get("currency", booking.currency)),
        object_id=intent_id,
        intent_id=intent_id,
    )
    problem = _mismatch(booking, intent, artist)
    if problem is not None:
        # Money arrived but does not match what we asked for: never confirm; an operator
        # must look (the ledger row above records what Stripe took).
        log.error("payment %s for booking %s not applied: %s", intent_id, booking.id, problem)
        return Applied("not confirmed: mismatch", problem=problem)
    if booking.payment_intent_id is None:
        booking.payment_intent_id = intent_id
    if booking.status == BookingStatus.CONFIRMED:
        return Applied("already confirmed")
    if booking.status == BookingStatus.PENDING_PAYMENT:
        # Still PENDING_PAYMENT means nobody took the slot: the constraint kept it ours.
        _confirm(booking, ctx.now)
        return Applied(
            "confirmed", notify_booking(ctx.session, booking, NotificationKind.BOOKING_CONFIRMED)
        )
    return _late_payment(ctx, booking, artist, intent_id, received)


def _late_payment(
    ctx: Context, booking: Booking, artist: Artist, intent_id: str, received: int
) -> Applied:
    """Paid after the hold EXPIRED (or was CANCELLED): keep the booking if its slot is
    still free, otherwise give the money back."""
    claim = claim_slot(
        ctx.session, artist, booking.start_time, booking.end_time, ctx.now, exclude=booking.id
    )
    if not claim.taken:
        try:
            with ctx.session.begin_nested():
                _confirm(booking, ctx.now)
                ctx.session.flush()
        except IntegrityError as exc:
            if not is_overlap_violation(exc):
                raise
            ctx.session.refresh(booking)
        else:
            return Applied(
                "late payment confirmed",
                claim.outbox
                + notify_booking(ctx.session, booking, NotificationKind.BOOKING_CONFIRMED),
                cancel_intents=claim.stale_intents,
            )
    refund_id, amount, currency = ctx.gateway.refund_in_full(intent_id, booking.id)
    _record(
        ctx,
        booking,
        kind=TransactionKind.REFUND,
        status=TransactionStatus.SUCCEEDED,
        amount_minor=amount or received,
        currency=currency or booking.currency,
        object_id=refund_id,
        intent_id=intent_id,
    )
    return Applied(
        f"late payment refunded ({refund_id})",
        claim.outbox + notify_booking(ctx.session, booking, NotificationKind.PAYMENT_REFUNDED),
        cancel_intents=claim.stale_intents,
    )


def payment_failed(ctx: Context) -> Applied:
    intent = ctx.obj
    intent_id = str(intent["id"])
    booking = _booking_for_intent(ctx.session, intent)
    if booking is None:
        return Applied(f"no booking for intent {intent_id}", ignored=True)
    error = intent.get("last_payment_error") or {}
    _record(
        ctx,
        booking,
        kind=TransactionKind.PAYMENT,
        status=TransactionStatus.FAILED,
        amount_minor=int(intent.get("amount") or 0),
        currency=str(intent.get("currency", booking.currency)),
        object_id=intent_id,
        intent_id=intent_id,
        # Stripe's error code (card_declined, expired_card, ...); the decline code only
        # when there is no code.
        failure_code=error.get("code") or error.get("decline_code"),
        failure_message=error.get("message"),
    )
    if booking.status != BookingStatus.PENDING_PAYMENT:
        # A failure reported after the booking was settled changes nothing.
        return Applied(f"failed attempt recorded; booking is {booking.status}")
    # The hold stays: the client may retry with another card.
    return Applied(
        "failed attempt recorded",
        notify_booking(ctx.session, booking, NotificationKind.PAYMENT_FAILED),
    )


def payment_canceled(ctx: Context) -> Applied:
    intent = ctx.obj
    booking = _booking_for_intent(ctx.session, intent)
    if booking is None:
        return Applied(f"no booking for intent {intent.get('id')}", ignored=True)
    if booking.status != BookingStatus.PENDING_PAYMENT:
        return Applied(f"booking is {booking.status}")
    booking.status = BookingStatus.CANCELLED
    booking.cancelled_at = ctx.now
    return Applied("cancelled")


def _refunded_so_far(ctx: Context, charge_id: str, intent_id: str | None) -> int:
    query = select(func.coalesce(func.sum(StripeTransaction.amount_minor), 0)).where(
        StripeTransaction.kind == TransactionKind.REFUND,
        StripeTransaction.status == TransactionStatus.SUCCEEDED,
    )
    if intent_id:
        query = query.where(StripeTransaction.payment_intent_id == intent_id)
    else:
        query = query.where(StripeTransaction.stripe_object_id.startswith(f"{charge_id}:refunded:"))
    return int(ctx.session.scalar(query) or 0)


def charge_refunded(ctx: Context) -> Applied:
    charge = ctx.obj
    charge_id = str(charge["id"])
    intent_id = charge.get("payment_intent")
    # Refund events of one charge apply one after the other (the running-total case below
    # reads what is recorded before adding to it).
    advisory_xact_lock(ctx.session, f"charge-refunds:{charge_id}")
    booking = (
        _booking_for_intent(ctx.session, {"id": intent_id, "metadata": charge.get("metadata")})
        if intent_id
        else None
    )
    refunds = [
        r
        for r in ((charge.get("refunds") or {}).get("data") or [])
        if r.get("status", "succeeded") == "succeeded"
    ]
    if not refunds:
        # Payloads without the refunds list carry only the running total: record what it
        # adds to the refunds already in the ledger (in any order, never twice).
        total = int(charge.get("amount_refunded") or 0)
        missing = total - _refunded_so_far(ctx, charge_id, intent_id)
        if missing > 0:
            refunds = [
                {
                    "id": f"{charge_id}:refunded:{total}",
                    "amount": missing,
                    "currency": charge.get("currency"),
                }
            ]
    recorded = 0
    for refund in refunds:
        recorded += _record(
            ctx,
            booking,
            kind=TransactionKind.REFUND,
            status=TransactionStatus.SUCCEEDED,
            amount_minor=int(refund.get("amount") or 0),
            currency=str(refund.get("currency") or charge.get("currency") or ""),
            object_id=str(refund["id"]),
            intent_id=intent_id,
        )
    return Applied(f"{recorded} refund(s) recorded")


def account_updated(ctx: Context) -> Applied:
    account = ctx.obj
    created = ctx.event.stripe_created or 0
    # Events may arrive out of order: only a newer account state wins.
    result = ctx.session.execute(
        update(Artist)
        .where(
            Artist.stripe_account_id == account.get("id"),
            func.coalesce(Artist.stripe_account_synced_at, 0) <= created,
        )
        .values(
            charges_enabled=bool(account.get("charges_enabled")),
            stripe_account_synced_at=created,
        )
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return Applied(f"{count} artist(s) updated")


HANDLERS: dict[str, Callable[[Context], Applied]] = {
    "payment_intent.succeeded": payment_succeeded,
    "payment_intent.payment_failed": payment_failed,
    "payment_intent.canceled": payment_canceled,
    "charge.refunded": charge_refunded,
    "account.updated": account_updated,
}
HANDLED_EVENT_TYPES = frozenset(HANDLERS)


# --- the use case --------------------------------------------------------------------


def apply_event(
    resources: Resources, gateway: StripeGateway, queue: TaskQueue, event_id: str
) -> str:
    """Apply one inbox event at most once. Returns what happened (for logs and tests).
    Raises on transient failures (the task retries); the event is then marked FAILED
    with the error so an operator can see it."""
    try:
        with transaction(resources.sessions) as session:
            event = session.scalar(
                select(StripeEvent).where(StripeEvent.id == event_id).with_for_update()
            )
            if event is None:
                return "unknown event"
            if event.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
                return f"already {event.status.lower()}"
            event.attempts += 1
            handler = HANDLERS.get(event.type)
            if handler is None:
                applied = Applied(f"type {event.type} is not handled", ignored=True)
            else:
                applied = handler(Context(session, gateway, event, utcnow()))
            event.status = EventStatus.IGNORED if applied.ignored else EventStatus.PROCESSED
            event.processed_at = func.now()
            event.last_error = applied.problem
    except Exception as exc:
        _mark_failed(resources, event_id, exc)
        raise
    for note_id in applied.outbox:
        queue.enqueue(SEND_NOTIFICATION, str(note_id))
    for intent_id in applied.cancel_intents:
        try:
            gateway.cancel_intent(intent_id)
        except PaymentProviderError as exc:
            # The hold is EXPIRED either way; a payment on it is the late-payment path.
            log.warning("could not cancel intent %s of an expired hold: %s", intent_id, exc)
    log.info("stripe event %s applied: %s", event_id, applied.note)
    return applied.note


def _mark_failed(resources: Resources, event_id: str, exc: BaseException) -> None:
    try:
        with transaction(resources.sessions) as session:
            session.execute(
                update(StripeEvent)
                .where(
                    StripeEvent.id == event_id,
                    StripeEvent.status.in_([EventStatus.RECEIVED, EventStatus.FAILED]),
                )
                .values(
                    status=EventStatus.FAILED,
                    attempts=StripeEvent.attempts + 1,
                    last_error=f"{type(exc).__name__}: {exc}"[:2000],
                )
            )
    except Exception:  # the database itself may be what failed
        log.exception("could not record the failure of stripe event %s", event_id)
