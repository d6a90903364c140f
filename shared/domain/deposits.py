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


class DepositMove(StrEnum):
    """What a booking transition does with the deposit (see `TABLE`)."""

    RECEIVED = "RECEIVED"  # Stripe reports the payment arrived
    REFUND = "REFUND"  # give it back in full (a refund is owed)
    FORFEIT = "FORFEIT"  # keep it (late client cancel, no-show, cancel without refund)


# (move, deposit status now) → the deposit status after it. A pair without a row changes
# nothing: only an unpaid deposit can arrive, only a paid one — or what a Dashboard refund
# left of it — can go back or be kept (a deposit already refunded, forfeited or never
# asked for stays as it is, and no refund is owed for it twice).
TABLE: dict[tuple[DepositMove, DepositStatus], DepositStatus] = {
    (DepositMove.RECEIVED, DepositStatus.UNPAID): DepositStatus.PAID,
    (DepositMove.REFUND, DepositStatus.PAID): DepositStatus.REFUND_PENDING,
    (DepositMove.FORFEIT, DepositStatus.PAID): DepositStatus.FORFEITED,
    (DepositMove.REFUND, DepositStatus.PARTIALLY_REFUNDED): DepositStatus.REFUND_PENDING,
    (DepositMove.FORFEIT, DepositStatus.PARTIALLY_REFUNDED): DepositStatus.FORFEITED,
}


def after(move: DepositMove, status: DepositStatus) -> DepositStatus:
    """The deposit status once `move` is applied to a deposit in `status`."""
    return TABLE.get((move, status), status)


def changes(move: DepositMove, status: DepositStatus) -> bool:
    """Does `move` change a deposit in `status`? (For REFUND: is a refund owed?)"""
    return (move, status) in TABLE
