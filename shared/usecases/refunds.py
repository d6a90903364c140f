"""Refunds: owed in the transaction that decides them, made on Stripe after the commit.

- `owe()` runs inside the deciding transaction (a late payment whose slot was taken,
  later the lifecycle's cancellations): one PENDING row per booking and reason, keyed by
  an idempotency key derived from both, so deciding twice owes once. Its id goes out in
  the Effects; the runner enqueues `PROCESS_REFUND`.
- `make()` is that task. It reads the row in a short transaction, asks Stripe with no
  transaction open (create with the row's key; once Stripe has given the refund an id,
  retrieve it instead), then records the answer in a second short transaction. A
  transient failure counts an attempt and raises for the task to retry with backoff; a
  refused request marks the row FAILED for an operator. Two tasks for one row at once
  are harmless: Stripe answers the same key with the same refund (or 409, retried).
- When Stripe reports the refund succeeded, the ledger gets its REFUND row, idempotent
  with `charge.refunded` in either order; once Stripe took the refund on, the client is
  told (one PAYMENT_REFUNDED mail per booking).
- `redeliver_pending()` is the sweeper: owed refunds untouched for `REDELIVERY_AFTER`
  (their task was lost, or ran out of retries) are enqueued again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.adapters.db import advisory_xact_lock, transaction
from shared.adapters.models import (
    Booking,
    NotificationKind,
    Refund,
    TransactionKind,
    TransactionStatus,
)
from shared.adapters.payments import (
    PaymentProviderError,
    RefundRequest,
    RefundResult,
    StripeGateway,
    TransientPaymentError,
    refund_idempotency_key,
)
from shared.adapters.runtime import Resources
from shared.domain.money import to_minor_units
from shared.domain.refunds import (
    RefundReason,
    RefundStatus,
    accepted,
    ledger_amount,
    status_from_stripe,
)
from shared.usecases import ledger
from shared.usecases.effects import NONE, Effects, Outcome
from shared.usecases.notifications import notify_booking

log = logging.getLogger("inkflow.refunds")

REDELIVERY_AFTER = timedelta(minutes=5)
_LAST_ERROR_MAX = 2000


def owe(session: Session, booking: Booking, reason: RefundReason, *, now: datetime) -> Effects:
    """Record in the caller's transaction that the booking's deposit goes back in full."""
    if booking.payment_intent_id is None:
        raise ValueError(f"booking {booking.id} has no payment to refund")
    new_id = session.execute(
        insert(Refund)
        .values(
            id=uuid.uuid4(),
            booking_id=booking.id,
            payment_intent_id=booking.payment_intent_id,
            amount_minor=to_minor_units(booking.deposit_amount, booking.currency),
            currency=booking.currency,
            reason=reason,
            idempotency_key=refund_idempotency_key(booking.id, reason),
            status=RefundStatus.PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Refund.id)
    ).scalar_one_or_none()
    return Effects(refunds=(new_id,)) if new_id is not None else NONE


def make(
    resources: Resources, gateway: StripeGateway, refund_id: uuid.UUID, *, now: datetime
) -> Outcome:
    """Carry out one owed refund on Stripe (see the module docstring)."""
    with transaction(resources.sessions) as session:
        refund = session.get(Refund, refund_id)
        if refund is None:
            log.warning("refund %s not found", refund_id)
            return Outcome("missing")
        if refund.status != RefundStatus.PENDING:
            return Outcome(f"already {refund.status.lower()}")
        known_id = refund.stripe_refund_id
        request = RefundRequest(
            intent_id=refund.payment_intent_id,
            booking_id=refund.booking_id,
            reason=RefundReason(refund.reason),
            idempotency_key=refund.idempotency_key,
        )
    # No transaction is open here: Stripe may take as long as it likes.
    try:
        answer = gateway.retrieve_refund(known_id) if known_id else gateway.refund_in_full(request)
    except TransientPaymentError as exc:
        _count_attempt(resources, refund_id, exc, now, give_up=False)
        raise
    except PaymentProviderError as exc:
        _count_attempt(resources, refund_id, exc, now, give_up=True)
        log.error("refund %s of booking %s refused: %s", refund_id, request.booking_id, exc)
        return Outcome(f"failed: {exc}")
    with transaction(resources.sessions) as session:
        return _record(session, refund_id, answer, now)


def _count_attempt(
    resources: Resources,
    refund_id: uuid.UUID,
    error: PaymentProviderError,
    now: datetime,
    *,
    give_up: bool,
) -> None:
    values: dict[str, object] = {
        "attempts": Refund.attempts + 1,
        "last_error": f"{type(error).__name__}: {error}"[:_LAST_ERROR_MAX],
        "updated_at": now,
    }
    if give_up:
        values.update(status=RefundStatus.FAILED, settled_at=now)
    with transaction(resources.sessions) as session:
        session.execute(
            update(Refund)
            .where(Refund.id == refund_id, Refund.status == RefundStatus.PENDING)
            .values(**values)
        )


def _record(session: Session, refund_id: uuid.UUID, answer: RefundResult, now: datetime) -> Outcome:
    refund = session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    if refund is None or refund.status != RefundStatus.PENDING:
        # Another task for the same row recorded the same refund first.
        return Outcome("already recorded")
    if answer.charge_id:
        # One after the other with charge.refunded of this charge (see ledger_amount).
        advisory_xact_lock(session, f"charge-refunds:{answer.charge_id}")
    status = status_from_stripe(answer.status)
    refund.stripe_refund_id = answer.id
    refund.status = status
    refund.attempts += 1
    refund.updated_at = now
    refund.last_error = None if status != RefundStatus.FAILED else f"Stripe: {answer.status}"
    if status != RefundStatus.PENDING:
        refund.settled_at = now
    if status == RefundStatus.SUCCEEDED:
        _record_in_ledger(session, refund, answer)
    mails: list[uuid.UUID] = []
    if accepted(answer.status):
        booking = session.get(Booking, refund.booking_id)
        assert booking is not None
        mails = notify_booking(session, booking, NotificationKind.PAYMENT_REFUNDED)
    log.info("refund %s (%s): Stripe %s %s", refund.id, refund.reason, answer.id, answer.status)
    return Outcome(f"refund {answer.id} {answer.status}", Effects(mails=tuple(mails)))


def _record_in_ledger(session: Session, refund: Refund, answer: RefundResult) -> None:
    """Stripe's own report (charge.refunded) may have been applied first, possibly as a
    running total that already counts this refund: record only what it leaves."""
    amount = ledger_amount(
        answer.amount,
        paid_minor=ledger.paid_on(session, refund.payment_intent_id),
        refunded_minor=ledger.refunded_so_far(
            session, intent_id=refund.payment_intent_id, charge_id=answer.charge_id or ""
        ),
    )
    if amount <= 0:
        return
    ledger.record(
        session,
        ledger.Entry(
            booking_id=refund.booking_id,
            kind=TransactionKind.REFUND,
            status=TransactionStatus.SUCCEEDED,
            amount_minor=amount,
            currency=answer.currency,
            object_id=answer.id,
            intent_id=refund.payment_intent_id,
        ),
    )


def redeliver_pending(
    resources: Resources,
    *,
    now: datetime,
    older_than: timedelta = REDELIVERY_AFTER,
    limit: int = 100,
) -> Effects:
    """Owed refunds untouched for `older_than`, to enqueue again. Marking them touched in
    the same statement keeps the next sweeps from piling up tasks while one retries;
    SKIP LOCKED lets two sweepers run side by side."""
    stale = (
        select(Refund.id)
        .where(Refund.status == RefundStatus.PENDING, Refund.updated_at < now - older_than)
        .order_by(Refund.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with transaction(resources.sessions) as session:
        ids = session.scalars(
            update(Refund)
            .where(Refund.id.in_(stale.scalar_subquery()))
            .values(updated_at=now)
            .returning(Refund.id)
        ).all()
    if ids:
        log.info("re-enqueued %d owed refunds", len(ids))
    return Effects(refunds=tuple(ids))
