"""The booking lifecycle: deposit policy per artist, inactive services, cancelled /
completed / no-show bookings with their deposit status, and emails per occasion.

Written by hand: the status and kind check constraints are replaced (new values), the
notifications' uniqueness gains the occasion, and existing bookings get a deposit status
derived from their status and ledger.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("PENDING_PAYMENT", "CONFIRMED", "EXPIRED", "CANCELLED")
STATUSES = (*OLD_STATUSES, "COMPLETED", "NO_SHOW")
OLD_KINDS = ("BOOKING_CONFIRMED", "PAYMENT_FAILED", "HOLD_EXPIRED", "PAYMENT_REFUNDED")
KINDS = (*OLD_KINDS, "BOOKING_CANCELLED", "BOOKING_RESCHEDULED", "REMINDER", "NO_SHOW_RECORDED")
DEPOSIT_STATUSES = (
    "NOT_REQUIRED",
    "UNPAID",
    "PAID",
    "REFUND_PENDING",
    "REFUNDED",
    "PARTIALLY_REFUNDED",
    "FORFEITED",
    "REFUND_FAILED",
)
CANCELLED_BY = ("CLIENT", "ARTIST", "OPERATOR", "SYSTEM")


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _int(name: str, default: int) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default=sa.text(str(default)), nullable=False)


def upgrade() -> None:
    op.add_column("artists", sa.Column("refund_window_hours", sa.Integer(), nullable=True))
    op.add_column("artists", _int("reschedule_notice_hours", 48))
    op.add_column("artists", _int("max_reschedules", 1))
    op.add_column("artists", _int("reminder_hours", 24))
    op.add_column("artists", _int("no_show_limit", 0))
    op.create_check_constraint(
        "policy_non_negative",
        "artists",
        "(refund_window_hours IS NULL OR refund_window_hours >= 0) "
        "AND reschedule_notice_hours >= 0 AND max_reschedules >= 0 "
        "AND reminder_hours >= 0 AND no_show_limit >= 0",
    )

    op.add_column(
        "services",
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )

    op.add_column("bookings", sa.Column("completed_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("no_show_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("cancelled_by", sa.String(length=10)))
    op.add_column("bookings", sa.Column("cancellation_reason", sa.String(length=500)))
    op.add_column("bookings", _int("reschedule_count", 0))
    op.add_column(
        "bookings",
        sa.Column(
            "amount_refunded_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column("bookings", sa.Column("deposit_status", sa.String(length=20), nullable=True))
    # Existing bookings: what the ledger says about their deposit.
    op.execute(
        """
        WITH refunded AS (
            SELECT booking_id, sum(amount_minor) AS minor FROM stripe_transactions
            WHERE kind = 'REFUND' AND status = 'SUCCEEDED' AND booking_id IS NOT NULL
            GROUP BY booking_id
        ), paid AS (
            SELECT booking_id, sum(amount_minor) AS minor FROM stripe_transactions
            WHERE kind = 'PAYMENT' AND status = 'SUCCEEDED' AND booking_id IS NOT NULL
            GROUP BY booking_id
        )
        UPDATE bookings b SET
            amount_refunded_minor = coalesce(r.minor, 0),
            deposit_status = CASE
                WHEN b.deposit_amount = 0 THEN 'NOT_REQUIRED'
                WHEN r.minor IS NOT NULL AND r.minor >= coalesce(p.minor, 0) THEN 'REFUNDED'
                WHEN r.minor IS NOT NULL THEN 'PARTIALLY_REFUNDED'
                WHEN p.minor IS NOT NULL OR b.status = 'CONFIRMED' THEN 'PAID'
                ELSE 'UNPAID'
            END
        FROM bookings b2
        LEFT JOIN refunded r ON r.booking_id = b2.id
        LEFT JOIN paid p ON p.booking_id = b2.id
        WHERE b.id = b2.id
        """
    )
    op.alter_column("bookings", "deposit_status", nullable=False)
    op.drop_constraint(op.f("ck_bookings_status_known"), "bookings", type_="check")
    op.create_check_constraint("status_known", "bookings", f"status IN ({_in(STATUSES)})")
    op.create_check_constraint(
        "deposit_status_known", "bookings", f"deposit_status IN ({_in(DEPOSIT_STATUSES)})"
    )
    op.create_check_constraint(
        "cancelled_by_known",
        "bookings",
        f"cancelled_by IS NULL OR cancelled_by IN ({_in(CANCELLED_BY)})",
    )
    op.create_check_constraint("reschedule_count_non_negative", "bookings", "reschedule_count >= 0")
    op.create_check_constraint(
        "amount_refunded_non_negative", "bookings", "amount_refunded_minor >= 0"
    )
    op.create_index("ix_bookings_start_time_id", "bookings", ["start_time", "id"])

    op.add_column(
        "notifications",
        sa.Column("occasion", sa.String(length=100), server_default=sa.text("''"), nullable=False),
    )
    op.drop_constraint(
        op.f("uq_notifications_booking_id_kind_recipient"), "notifications", type_="unique"
    )
    op.create_unique_constraint(
        "uq_notifications_booking_id_kind_recipient_occasion",
        "notifications",
        ["booking_id", "kind", "recipient", "occasion"],
    )
    op.drop_constraint(op.f("ck_notifications_kind_known"), "notifications", type_="check")
    op.create_check_constraint("kind_known", "notifications", f"kind IN ({_in(KINDS)})")


def downgrade() -> None:
    op.execute(  # constants only
        f"DELETE FROM notifications WHERE kind NOT IN ({_in(OLD_KINDS)}) OR occasion <> ''"  # noqa: S608
    )
    op.drop_constraint(op.f("ck_notifications_kind_known"), "notifications", type_="check")
    op.create_check_constraint("kind_known", "notifications", f"kind IN ({_in(OLD_KINDS)})")
    op.drop_constraint(
        op.f("uq_notifications_booking_id_kind_recipient_occasion"), "notifications", type_="unique"
    )
    op.create_unique_constraint(
        "uq_notifications_booking_id_kind_recipient",
        "notifications",
        ["booking_id", "kind", "recipient"],
    )
    op.drop_column("notifications", "occasion")

    op.drop_index("ix_bookings_start_time_id", table_name="bookings")
    for name in (
        "amount_refunded_non_negative",
        "reschedule_count_non_negative",
        "cancelled_by_known",
        "deposit_status_known",
        "status_known",
    ):
        op.drop_constraint(op.f(f"ck_bookings_{name}"), "bookings", type_="check")
    # Closed bookings had no status of their own before: they were confirmed.
    op.execute("UPDATE bookings SET status = 'CONFIRMED' WHERE status IN ('COMPLETED', 'NO_SHOW')")
    op.create_check_constraint("status_known", "bookings", f"status IN ({_in(OLD_STATUSES)})")
    for column in (
        "deposit_status",
        "amount_refunded_minor",
        "reschedule_count",
        "cancellation_reason",
        "cancelled_by",
        "no_show_at",
        "completed_at",
    ):
        op.drop_column("bookings", column)

    op.drop_column("services", "active")

    op.drop_constraint(op.f("ck_artists_policy_non_negative"), "artists", type_="check")
    for column in (
        "no_show_limit",
        "reminder_hours",
        "max_reschedules",
        "reschedule_notice_hours",
        "refund_window_hours",
    ):
        op.drop_column("artists", column)
