"""The start a booking had before a reschedule, kept on that reschedule's emails.

A BOOKING_RESCHEDULED email shows the new time and the old one; it is rendered when it
is sent, from the booking as it is then, which no longer holds the old time (and a second
reschedule may move it again before the first email leaves). So each of those outbox rows
keeps the start it reports a move from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notifications", sa.Column("previous_start_time", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("notifications", "previous_start_time")
