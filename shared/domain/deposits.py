"""Where a booking's deposit stands, and who cancelled a booking.

The booking's status says whether it holds its slot; the deposit status says where the
money is. They move separately: a CANCELLED booking's deposit may be REFUND_PENDING,
REFUNDED or FORFEITED, and a refund started from Stripe's dashboard changes the deposit
of a booking whose status stays CONFIRMED.
"""

from __future__ import annotations

from enum import StrEnum


class DepositStatus(StrEnum):
    NOT_REQUIRED = "NOT_REQUIRED"  # the service asks no deposit
    UNPAID = "UNPAID"  # waiting for it (or the hold ended unpaid)
    PAID = "PAID"
    REFUND_PENDING = "REFUND_PENDING"  # a refund is owed or on its way at Stripe
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    FORFEITED = "FORFEITED"  # kept: a late cancellation or a no-show
    REFUND_FAILED = "REFUND_FAILED"  # Stripe could not refund: an operator must act


class CancelledBy(StrEnum):
    CLIENT = "CLIENT"
    ARTIST = "ARTIST"
    OPERATOR = "OPERATOR"
    SYSTEM = "SYSTEM"  # the platform itself (the payment provider failed, ...)


def initial_deposit_status(*, deposit_required: bool) -> DepositStatus:
    return DepositStatus.UNPAID if deposit_required else DepositStatus.NOT_REQUIRED
