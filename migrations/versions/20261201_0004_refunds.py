"""Refunds owed: decided inside a transaction, made on Stripe after the commit.

One row per booking action (idempotency_key unique, derived from the booking id and the
reason), PENDING until Stripe reports the refund succeeded or failed. A partial index
serves the sweeper that re-enqueues owed refunds whose task was lost. Written by hand.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("LATE_PAYMENT", "CLIENT_CANCEL", "ARTIST_CANCEL", "OPERATOR_CANCEL", "LEAVE_CONFLICT")
STATUSES = ("PENDING", "SUCCEEDED", "FAILED")


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("booking_id", sa.UUID(), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"status IN ({_in(STATUSES)})", name=op.f("ck_refunds_status_known")),
        sa.CheckConstraint(f"reason IN ({_in(REASONS)})", name=op.f("ck_refunds_reason_known")),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_refunds_booking_id_bookings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_refunds_idempotency_key")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_refunds_stripe_refund_id")),
    )
    op.create_index(op.f("ix_refunds_booking_id"), "refunds", ["booking_id"], unique=False)
    op.create_index(
        "ix_refunds_pending_updated_at",
        "refunds",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index("ix_refunds_pending_updated_at", table_name="refunds")
    op.drop_index(op.f("ix_refunds_booking_id"), table_name="refunds")
    op.drop_table("refunds")
