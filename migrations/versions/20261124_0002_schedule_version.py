"""Artists' schedule_version, bumped by triggers: the availability cache key.

Bookings, leaves and working hours bump it through DEFERRABLE INITIALLY DEFERRED
constraint triggers, so the artists row is locked only at commit, after every other lock
of the transaction: a booking, a webhook and the hold sweeper can never deadlock on it.
Policy columns of the artist bump it directly (same row).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHILD_TABLES = {
    # table: the UPDATE columns that matter for availability
    "bookings": "artist_id, status, start_time, end_time, expires_at",
    "leaves": "artist_id, start_time, end_time",
    "working_hours": "artist_id, day_of_week, start_minute, end_minute",
}


def upgrade() -> None:
    op.add_column(
        "artists",
        sa.Column("schedule_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        """
        CREATE FUNCTION inkflow_bump_schedule_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'DELETE' THEN
                UPDATE artists SET schedule_version = schedule_version + 1
                WHERE id = NEW.artist_id;
            END IF;
            IF TG_OP = 'DELETE' OR OLD.artist_id IS DISTINCT FROM NEW.artist_id THEN
                UPDATE artists SET schedule_version = schedule_version + 1
                WHERE id = OLD.artist_id;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    for table, columns in CHILD_TABLES.items():
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {table}_bump_schedule_version "
            f"AFTER INSERT OR DELETE OR UPDATE OF {columns} ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION inkflow_bump_schedule_version()"
        )
    op.execute(
        """
        CREATE FUNCTION inkflow_artist_policy_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF (OLD.timezone, OLD.buffer_min, OLD.min_notice_min, OLD.max_advance_days)
               IS DISTINCT FROM
               (NEW.timezone, NEW.buffer_min, NEW.min_notice_min, NEW.max_advance_days) THEN
                NEW.schedule_version := OLD.schedule_version + 1;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER artists_policy_bumps_schedule_version BEFORE UPDATE ON artists "
        "FOR EACH ROW EXECUTE FUNCTION inkflow_artist_policy_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER artists_policy_bumps_schedule_version ON artists")
    op.execute("DROP FUNCTION inkflow_artist_policy_changed()")
    for table in CHILD_TABLES:
        op.execute(f"DROP TRIGGER {table}_bump_schedule_version ON {table}")
    op.execute("DROP FUNCTION inkflow_bump_schedule_version()")
    op.drop_column("artists", "schedule_version")
