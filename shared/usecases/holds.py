"""Unpaid holds expire: after `expiresAt` a PENDING_PAYMENT booking stops blocking its
slot (availability and booking ignore it at once) and is marked EXPIRED, either by the
periodic sweeper or by a new booking that needs the slot."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus, NotificationKind
from shared.adapters.payments import PaymentProviderError, StripeGateway
from shared.adapters.queue import TaskQueue
from shared.adapters.runtime import Resources
from shared.tasks import SEND_NOTIFICATION
from shared.usecases.notifications import notify_booking

log = logging.getLogger("inkflow.holds")


def _expire(
    session: Session, which: ColumnElement[bool], now: datetime
) -> tuple[list[str], list[uuid.UUID]]:
    # Conditional update: a booking confirmed meanwhile stays confirmed.
    expired = session.scalars(
        update(Booking)
        .where(which, Booking.status == BookingStatus.PENDING_PAYMENT, Booking.expires_at <= now)
        .values(status=BookingStatus.EXPIRED, expired_at=now)
        .returning(Booking)
    ).all()
    intents = [b.payment_intent_id for b in expired if b.payment_intent_id]
    outbox: list[uuid.UUID] = []
    for booking in expired:
        outbox += notify_booking(session, booking, NotificationKind.HOLD_EXPIRED)
    return intents, outbox


def expire_overlapping_holds(
    session: Session, artist_id: uuid.UUID, start: datetime, end: datetime, now: datetime
) -> tuple[list[str], list[uuid.UUID]]:
    """Inside a booking transaction: stale holds overlapping [start, end) would still
    trip the exclusion constraint, so they are expired first (one statement; usually it
    matches nothing)."""
    return _expire(
        session,
        (Booking.artist_id == artist_id) & (Booking.start_time < end) & (Booking.end_time > start),
        now,
    )


@dataclass
class SweepResult:
    expired: int = 0
    intents_cancelled: list[str] = field(default_factory=list)


def expire_holds(
    resources: Resources,
    gateway: StripeGateway,
    queue: TaskQueue,
    *,
    now: datetime,
    batch: int = 200,
) -> SweepResult:
    """The periodic sweep. SKIP LOCKED lets two sweepers run without waiting on each
    other; cancelling an intent twice is harmless (idempotent on Stripe's side)."""
    result = SweepResult()
    while True:
        with transaction(resources.sessions) as session:
            ids = list(
                session.scalars(
                    select(Booking.id)
                    .where(
                        Booking.status == BookingStatus.PENDING_PAYMENT,
                        Booking.expires_at <= now,
                    )
                    .order_by(Booking.expires_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            intents, outbox = _expire(session, Booking.id.in_(ids), now) if ids else ([], [])
        result.expired += len(ids)
        for note_id in outbox:
            queue.enqueue(SEND_NOTIFICATION, str(note_id))
        for intent_id in intents:
            try:
                gateway.cancel_intent(intent_id)
                result.intents_cancelled.append(intent_id)
            except PaymentProviderError as exc:
                # Left open on Stripe: a payment arriving late is confirmed if the slot
                # is still free, refunded otherwise (the webhook path).
                log.warning("could not cancel intent %s of an expired hold: %s", intent_id, exc)
        if len(ids) < batch:
            return result
