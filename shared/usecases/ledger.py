"""The money ledger (what Stripe reports) and reads over it and the notification outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.adapters.models import (
    Notification,
    StripeTransaction,
    TransactionKind,
    TransactionStatus,
)


@dataclass(frozen=True, slots=True)
class Entry:
    booking_id: uuid.UUID | None
    kind: TransactionKind
    status: TransactionStatus
    amount_minor: int
    currency: str
    object_id: str  # the Stripe object (intent, refund) the entry is about
    intent_id: str | None
    event_id: str | None = None  # the webhook event that reported it, if any
    failure_code: str | None = None
    failure_message: str | None = None


def record(session: Session, entry: Entry) -> bool:
    """One ledger row; a second report of the same fact inserts nothing. Successes are
    unique per Stripe object and kind (one event may carry several refunds); failed
    attempts per event (the same intent may fail several times). True when inserted.
    Rows are stamped with the statement's time, not the transaction's: several rows
    written in one transaction keep their order (see `refunds_of`)."""
    inserted = session.execute(
        insert(StripeTransaction)
        .values(
            id=uuid.uuid4(),
            booking_id=entry.booking_id,
            kind=entry.kind,
            status=entry.status,
            amount_minor=entry.amount_minor,
            currency=entry.currency.lower(),
            stripe_object_id=entry.object_id,
            payment_intent_id=entry.intent_id,
            stripe_event_id=entry.event_id,
            failure_code=entry.failure_code,
            failure_message=entry.failure_message,
            created_at=func.clock_timestamp(),
        )
        .on_conflict_do_nothing()
        .returning(StripeTransaction.id)
    ).first()
    return inserted is not None


def _succeeded_sum(session: Session, kind: TransactionKind, *where: ColumnElement[bool]) -> int:
    query = select(func.coalesce(func.sum(StripeTransaction.amount_minor), 0)).where(
        StripeTransaction.kind == kind,
        StripeTransaction.status == TransactionStatus.SUCCEEDED,
        *where,
    )
    return int(session.scalar(query) or 0)


def refunds_of(session: Session, booking_id: uuid.UUID) -> list[StripeTransaction]:
    """The booking's REFUND rows (succeeded and failed), in the order they were recorded."""
    return list(
        session.scalars(
            select(StripeTransaction)
            .where(
                StripeTransaction.booking_id == booking_id,
                StripeTransaction.kind == TransactionKind.REFUND,
            )
            .order_by(StripeTransaction.created_at, StripeTransaction.id)
        )
    )


def paid_on(session: Session, intent_id: str) -> int:
    return _succeeded_sum(
        session, TransactionKind.PAYMENT, StripeTransaction.payment_intent_id == intent_id
    )


def booking_history(
    session: Session, booking_id: uuid.UUID
) -> tuple[list[StripeTransaction], list[Notification]]:
    transactions = list(
        session.scalars(
            select(StripeTransaction)
            .where(StripeTransaction.booking_id == booking_id)
            .order_by(StripeTransaction.created_at, StripeTransaction.id)
        )
    )
    notifications = list(
        session.scalars(
            select(Notification)
            .where(Notification.booking_id == booking_id)
            .order_by(Notification.created_at, Notification.id)
        )
    )
    return transactions, notifications
