"""Indexes for a large database: the outbox sweeper's PENDING rows, the inbox sweeper's
events with attempts left, the retention purges (applied events, sent mails) and the
leaves meeting a window (GiST, both bounds). Written by hand.

Built CONCURRENTLY (outside a transaction): on a table of millions of rows a plain
CREATE INDEX would block every webhook, booking and mail for its whole build.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_notifications_pending_created_at",
            "notifications",
            ["created_at"],
            postgresql_where=sa.text("status = 'PENDING'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_notifications_sent_at",
            "notifications",
            ["sent_at"],
            postgresql_where=sa.text("status = 'SENT'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_stripe_events_redeliverable",
            "stripe_events",
            ["received_at"],
            postgresql_where=sa.text("status IN ('RECEIVED', 'FAILED') AND attempts < 10"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_stripe_events_applied_processed_at",
            "stripe_events",
            ["processed_at"],
            postgresql_where=sa.text("status IN ('PROCESSED', 'IGNORED')"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_leaves_artist_period",
            "leaves",
            ["artist_id", sa.text("tstzrange(start_time, end_time, '[)')")],
            postgresql_using="gist",
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in (
            "ix_leaves_artist_period",
            "ix_stripe_events_applied_processed_at",
            "ix_stripe_events_redeliverable",
            "ix_notifications_sent_at",
            "ix_notifications_pending_created_at",
        ):
            op.drop_index(name, postgresql_concurrently=True, if_exists=True)
