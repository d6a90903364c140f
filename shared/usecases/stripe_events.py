"""Applying verified Stripe events from the inbox: the state machine per event type.

One transaction per event with the inbox row locked (FOR UPDATE), so two workers never
apply one event together and a redelivery finds it PROCESSED. Bookings are locked too,
so events of one booking apply one after the other. Every write is conditional or
ON CONFLICT DO NOTHING: any order, any number of deliveries, the same final state.

What Stripe does not put in an event is asked of Stripe before that transaction opens
(never inside it): current API versions send `charge.refunded` with the running total
only, so for a refund event still to apply the transaction ends unwritten, the charge's
refunds are listed (`RefundLister`), and a second transaction records each of them
(`refund_reports`). Other events cost one transaction: BEGIN, the inbox row, the
handler's statements, one UPDATE of the inbox row, COMMIT.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import redis
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from shared.adapters import metrics
from shared.adapters.db import describe_error, is_momentary, transaction
from shared.adapters.models import (
    Artist,
    Booking,
    Client,
    EventStatus,
    StripeEvent,
    TransactionKind,
    TransactionStatus,
)
from shared.adapters.payments import (
    RefundResult,
    TransientPaymentError,
    account_from_json,
    refund_from_json,
)
from shared.adapters.runtime import Resources
from shared.domain.money import to_minor_units
from shared.domain.transitions import Action, BookingStatus, Facts, Rule, decide, needs_slot_check
from shared.usecases import ledger, refund_reports
from shared.usecases import transitions as transition
from shared.usecases.booking import claim_slot, is_overlap_violation
from shared.usecases.effects import NONE, Effects, Outcome

log = logging.getLogger("inkflow.stripe_events")

# After this many failed applications an event waits for an operator (`inkflow events`).
MAX_AUTOMATIC_ATTEMPTS = 10


@dataclass(frozen=True)
class Applied:
    """What a handler did: a note for the inbox row and the effects for after commit."""

    note: str
    effects: Effects = NONE
    ignored: bool = False
    problem: str | None = None  # kept on the inbox row for operators


@dataclass(frozen=True)
class Context:
    session: Session
    event: StripeEvent
    now: datetime
    # For refund events: the charge's refunds as Stripe lists them, asked before the
    # transaction opened.
    refunds: tuple[RefundResult, ...] = ()

    @property
    def obj(self) -> dict[str, Any]:
        data: dict[str, Any] = self.event.payload["data"]["object"]
        return data


# --- helpers -------------------------------------------------------------------------


def _booking_row_for_intent(
    session: Session, intent: dict[str, Any]
) -> tuple[Booking, Artist, Client] | None:
    """The booking (locked) with its artist and client, in one round trip. The session
    only keeps objects someone references: a caller that holds the three finds them
    there again (`session.get`, the outbox's recipients) without a query."""
    metadata = intent.get("metadata") or {}
    booking_id = metadata.get("bookingId")
    query = (
        select(Booking, Artist, Client)
        .join(Artist, Artist.id == Booking.artist_id)
        .join(Client, Client.id == Booking.client_id)
        .with_for_update(of=Booking)
    )
    parsed: uuid.UUID | None = None
    if isinstance(booking_id, str):
        try:
            parsed = uuid.UUID(booking_id)
        except ValueError:
            parsed = None
    row = None
    if parsed is not None:
        row = session.execute(query.where(Booking.id == parsed)).first()
    if row is None:
        row = session.execute(query.where(Booking.payment_intent_id == intent.get("id"))).first()
    if row is None:
        return None
    booking, artist, client = row
    return booking, artist, client


def _booking_for_intent(session: Session, intent: dict[str, Any]) -> Booking | None:
    found = _booking_row_for_intent(session, intent)
    return None if found is None else found[0]


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
    return ledger.record(
        ctx.session,
        ledger.Entry(
            booking_id=booking.id if booking else None,
            kind=kind,
            status=status,
            amount_minor=amount_minor,
            currency=currency,
            object_id=object_id,
            intent_id=intent_id,
            event_id=ctx.event.id,
            failure_code=failure_code,
            failure_message=failure_message,
        ),
    )


def _facts(booking: Booking, now: datetime) -> Facts:
    return Facts(status=BookingStatus(booking.status), now=now, expires_at=booking.expires_at)


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


# --- handlers ------------------------------------------------------------------------


def payment_succeeded(ctx: Context) -> Applied:
    intent = ctx.obj
    intent_id = str(intent["id"])
    found = _booking_row_for_intent(ctx.session, intent)
    if found is None:
        return Applied(f"no booking for intent {intent_id}", ignored=True)
    # `client` stays referenced until the outbox rows are added (no query for it then).
    booking, artist, client = found
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
    facts = _facts(booking, ctx.now)
    effects = NONE
    if needs_slot_check(Action.PAYMENT_SUCCEEDED, facts.status):
        # Paid after the hold ended: is the slot still free? (Under the artist's lock,
        # stale holds on it expired first.)
        claim = claim_slot(
            ctx.session, artist, booking.start_time, booking.end_time, ctx.now, exclude=booking.id
        )
        facts = replace(facts, slot_free=not claim.taken)
        effects = claim.effects
    rule = decide(Action.PAYMENT_SUCCEEDED, facts)
    if rule is None:
        return Applied(f"already {booking.status.lower()}")
    if rule.makes_live and not _becomes_live(ctx.session, booking, rule, ctx.now):
        # The exclusion constraint saw an overlap the check missed: the slot is taken.
        rule = decide(Action.PAYMENT_SUCCEEDED, replace(facts, slot_free=False))
        assert rule is not None
    effects += transition.apply(ctx.session, booking, rule, ctx.now)
    del client
    return Applied(_payment_note(rule), effects)


def _becomes_live(session: Session, booking: Booking, rule: Rule, now: datetime) -> bool:
    """Try the status change under a savepoint: False (and the booking as it was) when the
    exclusion constraint refuses it."""
    try:
        with session.begin_nested():
            transition.set_status(booking, rule, now)
            session.flush()
    except IntegrityError as exc:
        if not is_overlap_violation(exc):
            raise
        session.refresh(booking)
        return False
    return True


def _payment_note(rule: Rule) -> str:
    if rule.source == BookingStatus.PENDING_PAYMENT:
        return "confirmed"
    if rule.target == BookingStatus.CONFIRMED:
        return "late payment confirmed"
    return "late payment: refund owed"


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
    rule = decide(Action.PAYMENT_FAILED, _facts(booking, ctx.now))
    if rule is None:
        # A failure reported after the booking was settled changes nothing.
        return Applied(f"failed attempt recorded; booking is {booking.status}")
    return Applied("failed attempt recorded", transition.apply(ctx.session, booking, rule, ctx.now))


def payment_canceled(ctx: Context) -> Applied:
    intent = ctx.obj
    booking = _booking_for_intent(ctx.session, intent)
    if booking is None:
        return Applied(f"no booking for intent {intent.get('id')}", ignored=True)
    rule = decide(Action.INTENT_CANCELED, _facts(booking, ctx.now))
    if rule is None:
        return Applied(f"booking is {booking.status}")
    return Applied("cancelled", transition.apply(ctx.session, booking, rule, ctx.now))


def refunds_reported(ctx: Context) -> Applied:
    """`charge.refunded` (any refund of the charge, the Dashboard's too), `refund.updated`,
    `refund.failed`, `charge.refund.updated`: every refund of the charge, as Stripe lists
    it now, is recorded (`refund_reports`); the booking's status does not change."""
    obj = ctx.obj
    intent_id = obj.get("payment_intent")
    booking = (
        _booking_for_intent(ctx.session, {"id": intent_id, "metadata": obj.get("metadata")})
        if intent_id
        else None
    )
    if booking is None:
        return Applied(f"no booking for {obj.get('object')} {obj.get('id')}", ignored=True)
    reports = list(ctx.refunds)
    if obj.get("object") == "refund" and obj.get("id") not in {r.id for r in reports}:
        reports.append(refund_from_json(obj))  # not listed (yet): as the event tells it
    recorded = refund_reports.record(
        ctx.session, booking, reports, now=ctx.now, event_id=ctx.event.id
    )
    return Applied(recorded.note, recorded.effects)


def account_updated(ctx: Context) -> Applied:
    """The artist's Connect state as the account in the event shows it: charges and payouts
    enabled, what Stripe needs now (`requirements.currently_due`). Charges enabled is what
    lets the artist take deposits: onboarding completed, they start without an operator."""
    if not ctx.obj.get("id"):
        return Applied("account.updated without an account id", ignored=True)
    account = account_from_json(ctx.obj)
    created = ctx.event.stripe_created or 0
    # Events may arrive out of order: only a newer account state wins.
    result = ctx.session.execute(
        update(Artist)
        .where(
            Artist.stripe_account_id == account.id,
            func.coalesce(Artist.stripe_account_synced_at, 0) <= created,
        )
        .values(
            charges_enabled=account.charges_enabled,
            payouts_enabled=account.payouts_enabled,
            requirements_due=list(account.requirements_due),
            stripe_account_synced_at=created,
        )
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return Applied(f"{count} artist(s) updated")


HANDLERS: dict[str, Callable[[Context], Applied]] = {
    "payment_intent.succeeded": payment_succeeded,
    "payment_intent.payment_failed": payment_failed,
    "payment_intent.canceled": payment_canceled,
    "charge.refunded": refunds_reported,
    "charge.refund.updated": refunds_reported,
    "refund.updated": refunds_reported,
    "refund.failed": refunds_reported,
    "account.updated": account_updated,
}
HANDLED_EVENT_TYPES = frozenset(HANDLERS)
# Types whose handler needs the charge's refunds listed from Stripe first.
REFUND_EVENT_TYPES = frozenset(t for t, h in HANDLERS.items() if h is refunds_reported)


class RefundLister(Protocol):
    def list_refunds(
        self, *, charge_id: str | None = None, intent_id: str | None = None
    ) -> list[RefundResult]: ...


class _RefundsFirst(Exception):
    """A refund event to apply whose refunds are not listed yet: the transaction ends
    (nothing written) and Stripe is asked with none open."""

    def __init__(self, charge_id: str | None, intent_id: str | None) -> None:
        super().__init__(charge_id, intent_id)
        self.charge_id = charge_id
        self.intent_id = intent_id


def _refund_ids(event: StripeEvent) -> tuple[str | None, str | None]:
    obj: dict[str, Any] = event.payload["data"]["object"]
    charge_id = obj.get("id") if obj.get("object") == "charge" else obj.get("charge")
    return charge_id, obj.get("payment_intent")


# --- the use case --------------------------------------------------------------------


def apply_event(
    resources: Resources, event_id: str, *, now: datetime, stripe: RefundLister
) -> Outcome:
    """Apply one inbox event at most once, in one transaction (for a refund event, after
    asking `stripe` what the event leaves out, see the module docstring). Returns what
    happened (for logs and tests) and the effects the caller runs after the commit. Raises
    on transient failures (the task retries); the event is then marked FAILED with the
    error so an operator can see it."""
    try:
        try:
            return _apply(resources, event_id, now, refunds=None)
        except _RefundsFirst as first:
            # Only refund events get here: the others (payments, accounts) cost one
            # transaction and no Stripe call.
            listed = stripe.list_refunds(charge_id=first.charge_id, intent_id=first.intent_id)
            return _apply(resources, event_id, now, refunds=tuple(listed))
    except Exception as exc:
        metrics.webhook_event("failed")
        _mark_failed(resources, event_id, exc)
        raise


def _apply(
    resources: Resources,
    event_id: str,
    now: datetime,
    *,
    refunds: tuple[RefundResult, ...] | None,
) -> Outcome:
    """The transaction of `apply_event`. `refunds`: the charge's refunds as Stripe listed
    them, None when not asked yet (raises _RefundsFirst for a refund event)."""
    with transaction(resources.sessions) as session:
        event = session.scalar(
            select(StripeEvent).where(StripeEvent.id == event_id).with_for_update()
        )
        if event is None:
            return Outcome("unknown event")
        if event.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
            return Outcome(f"already {event.status.lower()}")
        if refunds is None and event.type in REFUND_EVENT_TYPES:
            charge_id, intent_id = _refund_ids(event)
            if charge_id or intent_id:
                raise _RefundsFirst(charge_id, intent_id)
        handler = HANDLERS.get(event.type)
        if handler is None:
            applied = Applied(f"type {event.type} is not handled", ignored=True)
        else:
            applied = handler(Context(session, event, now, refunds or ()))
        # All in the one UPDATE of the inbox row at commit (a failed attempt rolls back
        # and is counted by _mark_failed).
        event.attempts += 1
        event.status = EventStatus.IGNORED if applied.ignored else EventStatus.PROCESSED
        event.processed_at = func.now()
        event.last_error = applied.problem
    metrics.webhook_event("applied")
    log.info("stripe event %s applied: %s", event_id, applied.note)
    return Outcome(applied.note, applied.effects)


def is_transient(error: BaseException) -> bool:
    """Would applying the same event succeed later? A database, Redis or Stripe that did
    not answer just now: yes. Anything else (a payload the database refuses, a field of
    the wrong type) fails again on every attempt: the event waits for an operator."""
    if isinstance(error, DBAPIError):
        return is_momentary(error)
    return isinstance(error, TransientPaymentError | redis.RedisError | OSError)


def _mark_failed(resources: Resources, event_id: str, exc: BaseException) -> None:
    transient = is_transient(exc)
    if not transient:
        log.error(
            "stripe event %s cannot be applied (%s): left for an operator (inkflow events)",
            event_id,
            describe_error(exc),
        )
    # A permanent failure uses up the automatic attempts at once: the inbox sweeper would
    # otherwise re-enqueue it for nothing until MAX_AUTOMATIC_ATTEMPTS.
    attempts = (
        StripeEvent.attempts + 1
        if transient
        else func.greatest(StripeEvent.attempts + 1, MAX_AUTOMATIC_ATTEMPTS)
    )
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
                    attempts=attempts,
                    last_error=describe_error(exc),
                )
            )
    except Exception:  # the database itself may be what failed
        log.exception("could not record the failure of stripe event %s", event_id)
