"""Refund statuses from Stripe's, and how much of a refund the ledger may still count."""

from __future__ import annotations

import uuid

import pytest

from shared.adapters.payments import refund_idempotency_key
from shared.domain.refunds import (
    RefundReason,
    RefundStatus,
    accepted,
    ledger_amount,
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


@pytest.mark.parametrize(
    ("refund", "paid", "refunded", "record"),
    [
        (5000, 5000, 0, 5000),  # our answer first
        (5000, 5000, 5000, 0),  # charge.refunded's running total counted it already
        (3500, 5000, 1500, 3500),  # a Dashboard refund of 15.00, then ours of the rest
        (3500, 5000, 5000, 0),  # ... reported together as a running total first
        (5000, 5000, 6000, 0),  # never negative
        (5000, 0, 0, 5000),  # no payment on record: taken as reported
    ],
)
def test_ledger_amount(refund: int, paid: int, refunded: int, record: int) -> None:
    assert ledger_amount(refund, paid_minor=paid, refunded_minor=refunded) == record


def test_one_idempotency_key_per_booking_and_reason() -> None:
    booking = uuid.UUID("6f1c3a4e-0000-4000-8000-000000000001")
    keys = {reason: refund_idempotency_key(booking, reason) for reason in RefundReason}
    assert len(set(keys.values())) == len(RefundReason)
    # Asked for before this table existed: the same key, so the same refund.
    assert keys[RefundReason.LATE_PAYMENT] == f"inkflow-late-refund-{booking}"
    assert keys[RefundReason.CLIENT_CANCEL] == f"inkflow-refund-client-cancel-{booking}"
    assert all(str(booking) in key for key in keys.values())


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
