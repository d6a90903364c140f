"""Deposit PaymentIntents that no booking names: found again, then attached or cancelled.

How one is left behind. Booking creation commits the hold, asks Stripe for the deposit
intent (idempotency key from the booking id), then stores the intent's id. When storing
fails (the database restarted: the client got 503) or Stripe's answer is lost (a timeout
after Stripe made it: the booking was cancelled, 502), Stripe holds an open intent that
no booking names, and nothing would ever cancel it: the hold sweeper cancels the intents
it knows of.

How it is found. By asking Stripe to create it again, with the same parameters and the
same idempotency key (`deposit_request`). Within Stripe's key window (24 hours) that
answers the intent made the first time without making another; if the first request never
reached Stripe, it makes one now (cancelled at once when the booking no longer waits for
it: one more cancelled intent on the dashboard, accounted for). Stripe's Search would be
read-only but is eventually consistent (a fresh intent may not be found yet, so "not
found" proves nothing) and listing intents cannot filter on metadata. Bookings older than
KEY_WINDOW are never asked about: a replay after the key expired would make a second
intent.

What is done. A booking still waiting for its deposit (PENDING_PAYMENT) gets the intent's
id; the hold sweeper cancels it when the hold runs out, a payment confirms it. For any
other status the intent is cancelled on Stripe first, and only then is its id stored on the
booking: a booking that names its intent is never looked at again, so a cancel that failed
is tried again at the next sweep. Stripe is never called inside a transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update

from shared.adapters.db import transaction
from shared.adapters.models import Artist, Booking
from shared.adapters.payments import (
    DepositRequest,
    Intent,
    PaymentProviderError,
    TransientPaymentError,
)
from shared.adapters.runtime import Resources
from shared.domain.transitions import BookingStatus
from shared.usecases.booking import deposit_request

log = logging.getLogger("inkflow.intents")

# Stripe keeps idempotency keys at least 24 hours; an hour of margin for clocks and for a
# sweep that is late.
KEY_WINDOW = timedelta(hours=23)


class DepositIntents(Protocol):
    def create_deposit_intent(self, deposit: DepositRequest) -> Intent: ...

    def cancel_intent(self, intent_id: str) -> Intent: ...


@dataclass(slots=True)
class Reconciled:
    attached: list[uuid.UUID] = field(default_factory=list)  # bookings still waiting
    cancelled: list[str] = field(default_factory=list)  # intents of bookings that ended
    retry: list[uuid.UUID] = field(default_factory=list)  # Stripe failed: next sweep
    stuck: list[uuid.UUID] = field(default_factory=list)  # Stripe refused: an operator


def _candidates(resources: Resources, now: datetime, batch: int) -> list[DepositRequest]:
    """Bookings with a deposit and no intent, old enough that their booking request is
    over and young enough that their idempotency key is still known to Stripe."""
    grace = timedelta(seconds=resources.settings.intent_reconcile_grace_seconds)
    with transaction(resources.sessions) as session:
        rows = session.execute(
            select(Booking, Artist.stripe_account_id)
            .join(Artist, Artist.id == Booking.artist_id)
            .where(
                Booking.without_intent(),
                Booking.created_at > now - KEY_WINDOW,
                Booking.created_at <= now - grace,
            )
            .order_by(Booking.created_at)
            .limit(batch)
        ).all()
    requests = []
    for booking, account in rows:
        if account is None:
            # The intent went to the account the artist had; without one, the parameters
            # cannot be the same again.
            log.error("booking %s has no intent and its artist no Stripe account", booking.id)
            continue
        requests.append(deposit_request(booking, account))
    return requests


def _still_waiting(resources: Resources, booking_id: uuid.UUID, intent_id: str) -> bool | None:
    """Attach the intent if the booking still waits for its deposit (True); False when it
    no longer does (the intent is to be cancelled); None when the booking names an intent
    already (attached meanwhile)."""
    with transaction(resources.sessions) as session:
        booking = session.scalar(select(Booking).where(Booking.id == booking_id).with_for_update())
        if booking is None or booking.payment_intent_id is not None:
            return None
        if booking.status != BookingStatus.PENDING_PAYMENT:
            return False
        booking.payment_intent_id = intent_id
        return True


def _name_cancelled(resources: Resources, booking_id: uuid.UUID, intent_id: str) -> None:
    """The booking names its intent, now cancelled: accounted for, not looked at again."""
    with resources.autocommit_sessions() as session:
        session.execute(
            update(Booking)
            .where(Booking.id == booking_id, Booking.payment_intent_id.is_(None))
            .values(payment_intent_id=intent_id)
        )


def reconcile_deposit_intents(
    resources: Resources, stripe: DepositIntents, *, now: datetime, batch: int = 100
) -> Reconciled:
    """The periodic task (see the module docstring). Raises nothing for Stripe failing:
    those bookings are tried again at the next sweep."""
    result = Reconciled()
    for deposit in _candidates(resources, now, batch):
        booking_id = deposit.booking_id
        try:
            intent = stripe.create_deposit_intent(deposit)
            waiting = _still_waiting(resources, booking_id, intent.id)
            if waiting is False:
                stripe.cancel_intent(intent.id)
                _name_cancelled(resources, booking_id, intent.id)
        except TransientPaymentError as exc:
            log.warning("deposit intent of booking %s: Stripe failed (%s)", booking_id, exc)
            result.retry.append(booking_id)
            continue
        except PaymentProviderError as exc:
            # E.g. the artist's account or the platform fee changed since: the key is
            # refused with other parameters. Logged every sweep until the key window ends.
            log.error("deposit intent of booking %s: Stripe refused (%s)", booking_id, exc)
            result.stuck.append(booking_id)
            continue
        if waiting:
            log.warning("booking %s: its deposit intent %s attached", booking_id, intent.id)
            result.attached.append(booking_id)
        elif waiting is False:
            log.warning("booking %s had ended: its deposit intent %s cancelled", booking_id,
                        intent.id)  # fmt: skip
            result.cancelled.append(intent.id)
    return result
