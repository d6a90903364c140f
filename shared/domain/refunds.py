"""Refunds: why we owe one, where it stands, and what a booking's refunds make of its
deposit.

A refund is decided inside a database transaction and recorded as owed (PENDING); Stripe
is asked after the commit. Stripe's own refund statuses map onto ours here. Whoever made
a refund (we, or someone in Stripe's Dashboard), Stripe reports it the same way; what the
deposit status becomes is `deposit_after_refunds`, a function of everything known about
the booking's refunds, so reports arriving twice or in any order agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from shared.domain.deposits import DepositStatus


class RefundReason(StrEnum):
    """Why the deposit goes back. One refund per booking and reason (the idempotency key
    is derived from both)."""

    LATE_PAYMENT = "LATE_PAYMENT"  # paid after the hold ended, and the slot was taken
    # Reserved for the booking lifecycle (cancellations with a refund):
    CLIENT_CANCEL = "CLIENT_CANCEL"
    ARTIST_CANCEL = "ARTIST_CANCEL"
    OPERATOR_CANCEL = "OPERATOR_CANCEL"
    LEAVE_CONFLICT = "LEAVE_CONFLICT"


class RefundStatus(StrEnum):
    # Owed: not yet accepted by Stripe, or accepted and still pending there.
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# Stripe refund statuses: succeeded | pending | requires_action | failed | canceled.
_FROM_STRIPE = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


def status_from_stripe(stripe_status: str) -> RefundStatus:
    """Our status for a refund Stripe reports with `stripe_status`. An unknown status
    keeps the refund owed (PENDING): it is looked at again later, never given up."""
    return _FROM_STRIPE.get(stripe_status, RefundStatus.PENDING)


def accepted(stripe_status: str) -> bool:
    """Stripe took the refund on (it succeeded or is on its way): the client may be told."""
    return stripe_status in ("succeeded", "pending")


def after_report(ours: RefundStatus, reported: RefundStatus) -> RefundStatus:
    """Our row's status once Stripe reports its refund `reported`. Reports may arrive late
    and out of order, so a status never goes back: PENDING may become anything, SUCCEEDED
    only FAILED (a refund can still fail after it succeeded), FAILED stays."""
    if ours == RefundStatus.PENDING:
        return reported
    if ours == RefundStatus.SUCCEEDED and reported == RefundStatus.FAILED:
        return RefundStatus.FAILED
    return ours


def reason_in_metadata(metadata: Mapping[str, str]) -> RefundReason | None:
    """The reason our refund request put in the refund's metadata (None for a refund made
    elsewhere, e.g. in the Dashboard)."""
    try:
        return RefundReason(metadata.get("reason", "").upper())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Settled:
    """A Stripe refund of the booking that reached an end: its money went back
    (succeeded), or it failed (or was canceled), possibly after having succeeded."""

    amount_minor: int
    succeeded: bool


@dataclass(frozen=True, slots=True)
class BookingRefunds:
    """Everything known about a booking's refunds."""

    paid_minor: int  # the deposit taken
    settled: Sequence[Settled]  # in the order they reached their end
    owed: bool = False  # a refund of ours not settled yet (not made, or pending at Stripe)
    refused: bool = False  # our latest refund request was refused: Stripe made none

    @property
    def refunded_minor(self) -> int:
        return sum(s.amount_minor for s in self.settled if s.succeeded)


def deposit_after_refunds(current: DepositStatus, refunds: BookingRefunds) -> DepositStatus:
    """Where the deposit stands given its refunds (the booking's status never changes
    because of a refund: a CONFIRMED booking refunded in the Dashboard stays CONFIRMED).

    All of it back: REFUNDED. Else a refund of ours under way: REFUND_PENDING. Else a
    failure nobody has made good: REFUND_FAILED — our request refused, or the last refund
    to settle failed (a refund that succeeds after a failure, e.g. an operator's retry,
    clears it). Else some back: PARTIALLY_REFUNDED. Nothing refunded: as it was."""
    refunded = refunds.refunded_minor
    if refunds.paid_minor > 0 and refunded >= refunds.paid_minor:
        return DepositStatus.REFUNDED
    if refunds.owed:
        return DepositStatus.REFUND_PENDING
    last_failed = bool(refunds.settled) and not refunds.settled[-1].succeeded
    if refunds.refused or last_failed:
        return DepositStatus.REFUND_FAILED
    if refunded > 0:
        return DepositStatus.PARTIALLY_REFUNDED
    return current
