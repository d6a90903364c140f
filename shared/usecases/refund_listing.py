"""What an operator sees of refunds (`inkflow refunds list`): the refunds we owe or asked
Stripe for; or only the failed ones an operator must act on — failed refunds (ours, and
those made elsewhere, e.g. in Stripe's Dashboard) of bookings whose deposit is still
REFUND_FAILED (nobody made them good since). One `Listed` per refund."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.adapters.models import (
    Booking,
    DepositStatus,
    Refund,
    RefundStatus,
    StripeTransaction,
    TransactionKind,
    TransactionStatus,
)


@dataclass(frozen=True, slots=True)
class Listed:
    refund_id: uuid.UUID | None  # ours; None for a refund made elsewhere
    booking_id: uuid.UUID | None
    stripe_refund_id: str | None
    reason: str | None  # ours: LATE_PAYMENT, CLIENT_CANCEL, ...
    status: str  # PENDING | SUCCEEDED | FAILED
    amount_minor: int
    currency: str
    attempts: int | None
    last_error: str | None
    deposit_status: str | None
    updated_at: datetime


def list_refunds(
    session: Session,
    *,
    failed_only: bool = False,
    booking_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Listed]:
    """Newest first. `failed_only`: see the module docstring."""
    ours = select(Refund, Booking.deposit_status).join(Booking, Booking.id == Refund.booking_id)
    if failed_only:
        ours = ours.where(
            Refund.status == RefundStatus.FAILED,
            Booking.deposit_status == DepositStatus.REFUND_FAILED,
        )
    if booking_id is not None:
        ours = ours.where(Refund.booking_id == booking_id)
    listed = [
        Listed(
            refund_id=refund.id,
            booking_id=refund.booking_id,
            stripe_refund_id=refund.stripe_refund_id,
            reason=refund.reason,
            status=refund.status,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            attempts=refund.attempts,
            last_error=refund.last_error,
            deposit_status=deposit,
            updated_at=refund.updated_at,
        )
        for refund, deposit in session.execute(ours.order_by(Refund.updated_at.desc()).limit(limit))
    ]
    if failed_only:
        listed += _failed_elsewhere(session, booking_id, limit)
    listed.sort(key=lambda item: item.updated_at, reverse=True)
    return listed[:limit]


def _failed_elsewhere(session: Session, booking_id: uuid.UUID | None, limit: int) -> list[Listed]:
    query = (
        select(StripeTransaction, Booking.deposit_status)
        .join(Booking, Booking.id == StripeTransaction.booking_id)
        .where(
            Booking.deposit_status == DepositStatus.REFUND_FAILED,
            StripeTransaction.kind == TransactionKind.REFUND,
            StripeTransaction.status == TransactionStatus.FAILED,
            ~select(Refund.id)
            .where(Refund.stripe_refund_id == StripeTransaction.stripe_object_id)
            .exists(),
        )
    )
    if booking_id is not None:
        query = query.where(StripeTransaction.booking_id == booking_id)
    rows = session.execute(query.order_by(StripeTransaction.created_at.desc()).limit(limit))
    return [
        Listed(
            refund_id=None,
            booking_id=tx.booking_id,
            stripe_refund_id=tx.stripe_object_id,
            reason=None,
            status=RefundStatus.FAILED,
            amount_minor=tx.amount_minor,
            currency=tx.currency,
            attempts=None,
            last_error=f"Stripe: failed ({tx.failure_code or 'no reason given'})",
            deposit_status=deposit,
            updated_at=tx.created_at,
        )
        for tx, deposit in rows
    ]
