"""Refunds: owed in the transaction that decides them, made on Stripe after the commit.

- `owe()` runs inside the deciding transaction (a late payment whose slot was taken,
  later the lifecycle's cancellations): one PENDING row per booking and reason, keyed by
  an idempotency key derived from both, so deciding twice owes once. Its id goes out in
  the Effects; the runner enqueues `PROCESS_REFUND`.
- `make()` is that task. It reads the row in a short transaction, asks Stripe with no
  transaction open (create with the row's key; once Stripe has given the refund an id,
  retrieve it instead), then records the answer in a second short transaction. A
  transient failure (no answer, 409, 429, 5xx) counts an attempt and raises for the task
  to retry with backoff — with the same key, so however often it is retried Stripe makes
  one refund; a refused request marks the row FAILED for an operator. Two tasks for one
  row at once are harmless: Stripe answers the same key with the same refund (or 409).
- The answer is recorded as every report of Stripe's about a refund is
  (`refund_reports.record`: ledger row, the client's e-mail, the deposit status), so the
  answer and `charge.refunded` / `refund.updated` agree whichever comes first. A refund
  Stripe answers `failed` or `canceled` (at once, or later by `refund.updated`) leaves
  the row FAILED and the deposit REFUND_FAILED.
- `retry()`: an operator asks again for a FAILED refund — a new owed refund of what is
  still unrefunded, under a new key derived from the failed one.
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

from shared.adapters import metrics
from shared.adapters.db import transaction
from shared.adapters.models import Booking, Refund
from shared.adapters.payments import (
    PaymentProviderError,
    RefundRequest,
    RefundResult,
    StripeGateway,
    TransientPaymentError,
    refund_idempotency_key,
    retry_idempotency_key,
)
from shared.adapters.runtime import Resources
from shared.domain.money import to_minor_units
from shared.domain.refunds import RefundReason, RefundStatus
from shared.usecases import ledger, refund_reports
from shared.usecases.effects import NONE, Effects, Outcome

log = logging.getLogger("inkflow.refunds")

REDELIVERY_AFTER = timedelta(minutes=5)
_LAST_ERROR_MAX = 2000


def owe(session: Session, booking: Booking, reason: RefundReason, *, now: datetime) -> Effects:
    """Record in the caller's transaction that what is left of the booking's deposit goes
    back: all of it, less what Stripe already reports refunded (a Dashboard refund)."""
    if booking.payment_intent_id is None:
        raise ValueError(f"booking {booking.id} has no payment to refund")
    left = to_minor_units(booking.deposit_amount, booking.currency) - booking.amount_refunded_minor
    if left <= 0:
        return NONE
    new_id = session.execute(
        insert(Refund)
        .values(
            id=uuid.uuid4(),
            booking_id=booking.id,
            payment_intent_id=booking.payment_intent_id,
            amount_minor=left,
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
        metrics.REFUND_FAILURES.labels("request").inc()
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
    last_error = f"{type(error).__name__}: {error}"[:_LAST_ERROR_MAX]
    with transaction(resources.sessions) as session:
        if not give_up:
            session.execute(
                update(Refund)
                .where(Refund.id == refund_id, Refund.status == RefundStatus.PENDING)
                .values(attempts=Refund.attempts + 1, last_error=last_error, updated_at=now)
            )
            return
        # Refused: Stripe made no refund. The deposit shows it (REFUND_FAILED).
        locked = _lock(session, refund_id)
        if locked is None:
            return
        booking, refund = locked
        if refund.status != RefundStatus.PENDING:
            return
        refund.attempts += 1
        refund.last_error = last_error
        refund.updated_at = refund.settled_at = now
        refund.status = RefundStatus.FAILED
        refund_reports.refresh_deposit(session, booking)


def _lock(session: Session, refund_id: uuid.UUID) -> tuple[Booking, Refund] | None:
    """The refund's booking, then the refund, locked in that order (as every writer of
    refunds does: the webhook's handlers lock the booking first)."""
    booking_id = session.scalar(select(Refund.booking_id).where(Refund.id == refund_id))
    if booking_id is None:
        return None
    booking = session.scalar(select(Booking).where(Booking.id == booking_id).with_for_update())
    refund = session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    assert booking is not None
    assert refund is not None
    return booking, refund


def _record(session: Session, refund_id: uuid.UUID, answer: RefundResult, now: datetime) -> Outcome:
    locked = _lock(session, refund_id)
    if locked is None:
        return Outcome("missing")
    booking, refund = locked
    if refund.status != RefundStatus.PENDING:
        # Another task for the same row, or Stripe's webhook, recorded it first.
        return Outcome("already recorded")
    refund.stripe_refund_id = answer.id
    refund.attempts += 1
    refund.updated_at = now
    refund.last_error = None
    recorded = refund_reports.record(session, booking, [answer], now=now)
    log.info("refund %s (%s): Stripe %s %s", refund.id, refund.reason, answer.id, answer.status)
    return Outcome(f"refund {answer.id} {answer.status}", recorded.effects)


def retry(session: Session, refund_id: uuid.UUID, *, now: datetime) -> Outcome:
    """An operator asks again for a refund that FAILED: a new owed refund (PENDING) of what
    the booking's deposit still has unrefunded, under a key derived from the failed one
    (asking twice owes once). Effects: the refund to make. Raises ValueError when there
    is nothing to retry."""
    locked = _lock(session, refund_id)
    if locked is None:
        raise ValueError(f"refund {refund_id} not found")
    booking, failed = locked
    if failed.status != RefundStatus.FAILED:
        raise ValueError(f"refund {refund_id} is {failed.status}, not FAILED")
    key = retry_idempotency_key(booking.id, RefundReason(failed.reason), failed.id)
    again = session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if again is not None:
        return Outcome(f"already retried: refund {again.id} is {again.status}")
    refund_reports.refresh_deposit(session, booking)
    paid = ledger.paid_on(session, failed.payment_intent_id) or failed.amount_minor
    left = paid - booking.amount_refunded_minor
    if left <= 0:
        raise ValueError(f"booking {booking.id} has nothing left to refund")
    again = Refund(
        id=uuid.uuid4(),
        booking_id=booking.id,
        payment_intent_id=failed.payment_intent_id,
        amount_minor=left,
        currency=failed.currency,
        reason=failed.reason,
        idempotency_key=key,
        status=RefundStatus.PENDING,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(again)
    session.flush()
    refund_reports.refresh_deposit(session, booking)
    return Outcome(f"refund {again.id} owed", Effects(refunds=(again.id,)))


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
