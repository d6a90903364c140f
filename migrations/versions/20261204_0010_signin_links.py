"""The dashboard's sign-in links: one row per magic link sent to an artist. The link
carries the row's id (signed); redeeming it sets `used_at` in one conditional UPDATE, so
a link opens one session however many times, and however fast, it is clicked. Written by
hand.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signin_links",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("artist_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("expires_at > created_at", name=op.f("ck_signin_links_expires_after")),
        sa.ForeignKeyConstraint(
            ["artist_id"],
            ["artists.id"],
            name=op.f("fk_signin_links_artist_id_artists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_links")),
    )
    # The per-artist rate limit counts an artist's recent links.
    op.create_index(
        "ix_signin_links_artist_id_created_at", "signin_links", ["artist_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_signin_links_artist_id_created_at", table_name="signin_links")
    op.drop_table("signin_links")
