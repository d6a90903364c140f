"""Refunds we owe: why, where they stand, and how much of one the ledger may still count.

A refund is decided inside a database transaction and recorded as owed (PENDING); Stripe
is asked after the commit. Stripe's own refund statuses map onto ours here, and
`ledger_amount` keeps the ledger from counting one refund twice when Stripe's
`charge.refunded` (which, in current API versions, carries only the running total) is
applied before the answer to our own request is recorded.
"""

from __future__ import annotations

from enum import StrEnum


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


def ledger_amount(refund_minor: int, *, paid_minor: int, refunded_minor: int) -> int:
    """How much of a refund of `refund_minor` the ledger may still record, given what was
    paid on the charge and what the ledger already counts as refunded on it (possibly
    from a running total that includes this very refund). Refunds never exceed what was
    paid; with no payment on record the refund is taken as reported."""
    if paid_minor <= 0:
        return refund_minor
    return max(0, min(refund_minor, paid_minor - refunded_minor))
