"""A partial index over bookings with a deposit and no PaymentIntent named, for the sweep
that finds the intents left behind (shared/usecases/intents.py). Written by hand.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_bookings_without_intent_created_at",
        "bookings",
        ["created_at"],
        postgresql_where=sa.text("payment_intent_id IS NULL AND deposit_amount > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_bookings_without_intent_created_at", table_name="bookings")
