"""Refund statuses from Stripe's, how our refunds follow what Stripe reports, and what a
booking's refunds make of its deposit."""

from __future__ import annotations

import uuid

import pytest

from shared.adapters.payments import refund_idempotency_key, retry_idempotency_key
from shared.domain.deposits import DepositStatus
from shared.domain.refunds import (
    BookingRefunds,
    RefundReason,
    RefundStatus,
    Settled,
    accepted,
    after_report,
    deposit_after_refunds,
    reason_in_metadata,
    status_from_stripe,
)
from shared.usecases.effects import Effects


@pytest.mark.parametrize(
    ("stripe_status", "ours", "tell_client"),
    [
        ("succeeded", RefundStatus.SUCCEEDED, True),
        ("pending", RefundStatus.PENDING, True),
        ("requires_action", RefundStatus.PENDING, False),
        ("failed", RefundStatus.FAILED, False),
        ("canceled", RefundStatus.FAILED, False),
        ("something_new", RefundStatus.PENDING, False),  # looked at again, never given up
    ],
)
def test_status_from_stripe(stripe_status: str, ours: RefundStatus, tell_client: bool) -> None:
    assert status_from_stripe(stripe_status) == ours
    assert accepted(stripe_status) is tell_client


_P, _S, _F = RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.FAILED


@pytest.mark.parametrize(
    ("ours", "reported", "after"),
    [
        (_P, _P, _P),
        (_P, _S, _S),
        (_P, _F, _F),
        (_S, _P, _S),  # a late report of the pending refund changes nothing
        (_S, _S, _S),
        (_S, _F, _F),  # a refund can fail after it succeeded
        (_F, _P, _F),  # failed is for good
        (_F, _S, _F),
        (_F, _F, _F),
    ],
)
def test_our_refund_only_moves_forward(
    ours: RefundStatus, reported: RefundStatus, after: RefundStatus
) -> None:
    assert after_report(ours, reported) == after


def test_the_reason_our_request_put_in_the_metadata() -> None:
    assert reason_in_metadata({"bookingId": "b", "reason": "client_cancel"}) == (
        RefundReason.CLIENT_CANCEL
    )
    assert reason_in_metadata({"reason": "late_payment"}) == RefundReason.LATE_PAYMENT
    assert reason_in_metadata({}) is None  # made in the Dashboard
    assert reason_in_metadata({"reason": "goodwill"}) is None


def ok(amount: int) -> Settled:
    return Settled(amount, succeeded=True)


def failed(amount: int) -> Settled:
    return Settled(amount, succeeded=False)


D = DepositStatus


@pytest.mark.parametrize(
    ("current", "refunds", "after"),
    [
        # Nothing refunded: the deposit stays where it was.
        (D.PAID, BookingRefunds(5000, ()), D.PAID),
        (D.FORFEITED, BookingRefunds(5000, ()), D.FORFEITED),
        # From the Dashboard: all of it, part of it, in two parts.
        (D.PAID, BookingRefunds(5000, (ok(5000),)), D.REFUNDED),
        (D.PAID, BookingRefunds(5000, (ok(1500),)), D.PARTIALLY_REFUNDED),
        (D.PAID, BookingRefunds(5000, (ok(1500), ok(3500))), D.REFUNDED),
        (D.FORFEITED, BookingRefunds(5000, (ok(1000),)), D.PARTIALLY_REFUNDED),
        # Reported before the payment itself: taken as the deposit.
        (D.UNPAID, BookingRefunds(5000, (ok(5000),)), D.REFUNDED),
        # Ours under way (owed, or pending at Stripe), even after a partial one.
        (D.REFUND_PENDING, BookingRefunds(5000, (), owed=True), D.REFUND_PENDING),
        (D.PAID, BookingRefunds(5000, (ok(1500),), owed=True), D.REFUND_PENDING),
        (D.REFUND_PENDING, BookingRefunds(5000, (ok(5000),), owed=True), D.REFUNDED),
        # Failures: ours refused, or the last refund to settle failed.
        (D.REFUND_PENDING, BookingRefunds(5000, (), refused=True), D.REFUND_FAILED),
        (D.REFUND_PENDING, BookingRefunds(5000, (failed(5000),)), D.REFUND_FAILED),
        (D.PAID, BookingRefunds(5000, (ok(1000), failed(4000))), D.REFUND_FAILED),
        (D.PAID, BookingRefunds(5000, (failed(5000),)), D.REFUND_FAILED),
        # ... a succeeded refund that failed later gives nothing back.
        (D.REFUNDED, BookingRefunds(5000, (failed(5000),)), D.REFUND_FAILED),
        # ... cleared by a refund that succeeds after it, or by a retry under way.
        (D.REFUND_FAILED, BookingRefunds(5000, (failed(5000), ok(5000))), D.REFUNDED),
        (D.REFUND_FAILED, BookingRefunds(5000, (failed(1000), ok(1000))), D.PARTIALLY_REFUNDED),
        (D.REFUND_FAILED, BookingRefunds(5000, (failed(5000),), owed=True), D.REFUND_PENDING),
        (D.REFUND_FAILED, BookingRefunds(5000, (ok(5000),), refused=True), D.REFUNDED),
    ],
)
def test_deposit_after_refunds(
    current: DepositStatus, refunds: BookingRefunds, after: DepositStatus
) -> None:
    assert deposit_after_refunds(current, refunds) == after


def test_refunded_amount_counts_what_succeeded_and_did_not_fail_since() -> None:
    refunds = BookingRefunds(5000, (ok(1000), failed(2000), ok(500)))
    assert refunds.refunded_minor == 1500


def test_one_idempotency_key_per_booking_and_reason() -> None:
    booking = uuid.UUID("6f1c3a4e-0000-4000-8000-000000000001")
    keys = {reason: refund_idempotency_key(booking, reason) for reason in RefundReason}
    assert len(set(keys.values())) == len(RefundReason)
    # Asked for before this table existed: the same key, so the same refund.
    assert keys[RefundReason.LATE_PAYMENT] == f"inkflow-late-refund-{booking}"
    assert keys[RefundReason.CLIENT_CANCEL] == f"inkflow-refund-client-cancel-{booking}"
    assert all(str(booking) in key for key in keys.values())
    failed_refund = uuid.UUID("6f1c3a4e-0000-4000-8000-0000000000ff")
    retry = retry_idempotency_key(booking, RefundReason.CLIENT_CANCEL, failed_refund)
    assert retry == f"inkflow-refund-client-cancel-{booking}-retry-{failed_refund}"


def test_effects_combine_with_plus() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    first = Effects(mails=(a,), cancel_intents=("pi_1",))
    second = Effects(refunds=(b,), tasks=(("inkflow.x", ("1",)),), mails=(b,))
    both = first + second
    assert both == Effects(
        mails=(a, b), refunds=(b,), cancel_intents=("pi_1",), tasks=(("inkflow.x", ("1",)),)
    )
    assert not Effects()
    assert both
    assert Effects() + first == first == first + Effects()
