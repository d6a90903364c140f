"""What Stripe reports about a booking's refunds, from any source, recorded one way.

Stripe tells us about refunds three ways: the answer to our own request (`refunds.make`),
`charge.refunded` (any refund of the charge, the Dashboard's included; current API
versions carry only the running total, so the charge's refunds are listed from Stripe
before the event's transaction) and `refund.updated` / `refund.failed` (a refund
succeeding or failing later). Each hands the refunds it knows of to `record()`, inside
the transaction that holds the booking's row lock, which:

- writes one ledger row per Stripe refund and outcome: REFUND SUCCEEDED once (unique per
  refund id), REFUND FAILED once when it fails (even after it succeeded: its money then
  no longer counts as refunded);
- brings our own refunds row along (found by the refund id, or — when the answer to our
  request was lost — by the booking and reason our request put in the metadata), its
  status only ever moving forward (`after_report`);
- e-mails the client PAYMENT_REFUNDED once per refund (occasion: the refund id) as soon
  as Stripe has taken it on (pending or succeeded);
- derives the booking's refunded amount and deposit status from everything recorded
  (`refresh_deposit`): the same whatever the order of the reports and however often each
  arrives. The booking's status is never changed by a refund.

A refund that fails is logged at ERROR: an operator must act (`inkflow refunds list
--failed`, the admin booking list filtered on depositStatus=REFUND_FAILED).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.adapters import metrics
from shared.adapters.models import (
    Booking,
    DepositStatus,
    NotificationKind,
    Refund,
    TransactionKind,
    TransactionStatus,
)
from shared.adapters.payments import RefundResult
from shared.domain.money import to_minor_units
from shared.domain.refunds import (
    BookingRefunds,
    RefundStatus,
    Settled,
    accepted,
    after_report,
    deposit_after_refunds,
    reason_in_metadata,
    status_from_stripe,
)
from shared.usecases import ledger
from shared.usecases.effects import Effects
from shared.usecases.notifications import notify_booking

log = logging.getLogger("inkflow.refunds")


@dataclass(frozen=True, slots=True)
class Recorded:
    succeeded: int  # refunds newly recorded as succeeded
    failed: int  # refunds newly recorded as failed
    effects: Effects

    @property
    def note(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.succeeded} refund(s) recorded{failed}"


def record(
    session: Session,
    booking: Booking,
    reports: Iterable[RefundResult],
    *,
    now: datetime,
    event_id: str | None = None,
) -> Recorded:
    """Record what Stripe reports about refunds of the booking's charge (see the module
    docstring). The caller holds the booking's row lock."""
    known = _known(session, booking.id)
    succeeded = failed = 0
    mails: list[uuid.UUID] = []
    # Oldest first: refunds learned together are recorded in the order Stripe made them.
    for report in sorted(reports, key=lambda r: (r.created, r.id)):
        status = status_from_stripe(report.status)
        before = known.get(report.id, RefundStatus.PENDING)
        if status == RefundStatus.SUCCEEDED and before == RefundStatus.PENDING:
            succeeded += _ledger(session, booking, report, TransactionStatus.SUCCEEDED, event_id)
        elif status == RefundStatus.FAILED and before != RefundStatus.FAILED:
            # Several failed refunds may come with one event: failed rows carry no event
            # id (the ledger keeps failures unique per event).
            failed += _ledger(session, booking, report, TransactionStatus.FAILED, None)
            # Counted before the commit: an alert signal, not a ledger (the ledger row
            # above is the record).
            metrics.REFUND_FAILURES.labels("stripe").inc()
            log.error(
                "refund %s (%s %s) of booking %s failed at Stripe: %s",
                report.id,
                report.amount,
                report.currency,
                booking.id,
                report.failure_reason or report.status,
            )
        known[report.id] = after_report(before, status)
        _bring_ours_along(session, booking, report, known[report.id], now)
        if accepted(report.status) and known[report.id] != RefundStatus.FAILED:
            mails += notify_booking(
                session, booking, NotificationKind.PAYMENT_REFUNDED, occasion=report.id
            )
    refresh_deposit(session, booking)
    return Recorded(succeeded, failed, Effects(mails=tuple(mails)))


def refresh_deposit(session: Session, booking: Booking) -> None:
    """The booking's refunded amount and deposit status, from the ledger's refunds and our
    refunds rows (see `deposit_after_refunds`). The caller holds the booking's row lock."""
    ended: dict[str, Settled] = {}
    for row in ledger.refunds_of(session, booking.id):  # in the order they were recorded
        ended.pop(row.stripe_object_id, None)  # a failure after success: it ended then
        ended[row.stripe_object_id] = Settled(
            row.amount_minor, succeeded=row.status == TransactionStatus.SUCCEEDED
        )
    ours = list(
        session.scalars(
            select(Refund).where(Refund.booking_id == booking.id).order_by(Refund.created_at)
        )
    )
    paid = ledger.paid_on(session, booking.payment_intent_id) if booking.payment_intent_id else 0
    refunds = BookingRefunds(
        paid_minor=paid or to_minor_units(booking.deposit_amount, booking.currency),
        settled=tuple(ended.values()),
        owed=any(r.status == RefundStatus.PENDING for r in ours),
        refused=bool(ours)
        and ours[-1].status == RefundStatus.FAILED
        and ours[-1].stripe_refund_id is None,
    )
    booking.amount_refunded_minor = refunds.refunded_minor
    booking.deposit_status = deposit_after_refunds(DepositStatus(booking.deposit_status), refunds)


def _known(session: Session, booking_id: uuid.UUID) -> dict[str, RefundStatus]:
    """What the ledger already says about each refund of the booking."""
    known: dict[str, RefundStatus] = {}
    for row in ledger.refunds_of(session, booking_id):
        failed = row.status == TransactionStatus.FAILED
        if failed or known.get(row.stripe_object_id) != RefundStatus.FAILED:
            known[row.stripe_object_id] = RefundStatus(row.status)
    return known


def _ledger(
    session: Session,
    booking: Booking,
    report: RefundResult,
    status: TransactionStatus,
    event_id: str | None,
) -> bool:
    return ledger.record(
        session,
        ledger.Entry(
            booking_id=booking.id,
            kind=TransactionKind.REFUND,
            status=status,
            amount_minor=report.amount,
            currency=report.currency or booking.currency,
            object_id=report.id,
            intent_id=report.intent_id or booking.payment_intent_id,
            event_id=event_id,
            failure_code=report.failure_reason if status == TransactionStatus.FAILED else None,
            failure_message=(
                f"Stripe refund {report.status}" if status == TransactionStatus.FAILED else None
            ),
        ),
    )


def _bring_ours_along(
    session: Session, booking: Booking, report: RefundResult, known: RefundStatus, now: datetime
) -> None:
    """Our refunds row for the reported refund, if it is ours, moved to what is known of
    it (a stale report of a refund known to have failed does not make it succeeded)."""
    ours = session.scalar(
        select(Refund).where(Refund.stripe_refund_id == report.id).with_for_update()
    )
    if ours is None:
        ours = _awaiting_answer(session, booking, report)
        if ours is None:
            return  # made elsewhere (the Dashboard)
        ours.stripe_refund_id = report.id
    status = after_report(RefundStatus(ours.status), known)
    if status == ours.status:
        return
    ours.status = status
    ours.updated_at = now
    ours.settled_at = now
    ours.last_error = (
        f"Stripe: {report.status} ({report.failure_reason or 'no reason given'})"
        if status == RefundStatus.FAILED
        else None
    )


def _awaiting_answer(session: Session, booking: Booking, report: RefundResult) -> Refund | None:
    """Our owed refund that Stripe made but whose answer we have not recorded (lost, or
    still on its way): our request put the booking and the reason in the metadata, and a
    booking owes at most one refund per reason at a time."""
    reason = reason_in_metadata(report.metadata)
    if reason is None or report.metadata.get("bookingId") != str(booking.id):
        return None
    return session.scalar(
        select(Refund)
        .where(
            Refund.booking_id == booking.id,
            Refund.reason == reason,
            Refund.status == RefundStatus.PENDING,
            Refund.stripe_refund_id.is_(None),
        )
        .with_for_update()
    )
