"""Delivery links, and whether an original may be transparent (for ``"format": "auto"``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 21:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Images uploaded before are taken as opaque.
    op.add_column(
        "images",
        sa.Column("transparent", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=64), nullable=False),
        sa.Column("transformation", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("auto_format", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_links_image_id_images"),
            ondelete="CASCADE",
            initially="DEFERRED",
            deferrable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    op.create_index(
        "ix_links_image_id_created_at", "links", ["image_id", "created_at"], unique=False
    )


def downgrade() -> None:
    with op.batch_alter_table("images") as images:
        images.drop_column("transparent")
    op.drop_index("ix_links_image_id_created_at", table_name="links")
    op.drop_table("links")
