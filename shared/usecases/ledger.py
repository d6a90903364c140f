"""Reads over the money ledger and the notification outbox."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.adapters.models import Notification, StripeTransaction


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
