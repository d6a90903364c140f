"""Ledger uniqueness: failed attempts are unique per event, successes per Stripe object.

The former unique (stripe_event_id, kind, status) also applied to successes, so a
charge.refunded event listing two refunds could record only one of them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        "uq_stripe_transactions_stripe_event_id_kind_status", "stripe_transactions", type_="unique"
    )
    op.create_index(
        "uq_stripe_transactions_event_kind_failed",
        "stripe_transactions",
        ["stripe_event_id", "kind"],
        unique=True,
        postgresql_where=sa.text("status = 'FAILED'"),
    )


def downgrade() -> None:
    op.drop_index("uq_stripe_transactions_event_kind_failed", table_name="stripe_transactions")
    op.create_unique_constraint(
        "uq_stripe_transactions_stripe_event_id_kind_status",
        "stripe_transactions",
        ["stripe_event_id", "kind", "status"],
    )
