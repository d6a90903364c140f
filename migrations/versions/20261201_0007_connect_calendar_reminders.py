"""Artists as users: Stripe Connect state (payouts, requirements due), the private
calendar feed's token (version and hash), and bookings' reminder time and iCalendar
sequence. Written by hand.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "artists",
        sa.Column("payouts_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "artists",
        sa.Column(
            "requirements_due",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
    )
    op.add_column(
        "artists",
        sa.Column(
            "calendar_token_version", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column("artists", sa.Column("calendar_token_hash", sa.String(length=64)))
    op.create_unique_constraint(
        op.f("uq_artists_calendar_token_hash"), "artists", ["calendar_token_hash"]
    )
    op.add_column("bookings", sa.Column("remind_at", sa.DateTime(timezone=True)))
    op.add_column(
        "bookings",
        sa.Column("calendar_sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_bookings_remind_at",
        "bookings",
        ["remind_at"],
        postgresql_where=sa.text("remind_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_bookings_remind_at", table_name="bookings")
    op.drop_column("bookings", "calendar_sequence")
    op.drop_column("bookings", "remind_at")
    op.drop_constraint(op.f("uq_artists_calendar_token_hash"), "artists", type_="unique")
    op.drop_column("artists", "calendar_token_hash")
    op.drop_column("artists", "calendar_token_version")
    op.drop_column("artists", "requirements_due")
    op.drop_column("artists", "payouts_enabled")
