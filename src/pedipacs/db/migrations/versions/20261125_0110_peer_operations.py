"""Peer operations: which DICOM operations each registered peer may ask for.

Issue 4: unknown calling AE titles are refused by default and each known peer is granted its
operations. Peers registered before this revision keep every operation they could use.

Revision ID: 8e4f0c3b6d52
Revises: 7d3e9b2a5c41
Create Date: 2026-11-25 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e4f0c3b6d52"
down_revision: str | None = "7d3e9b2a5c41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("peer") as batch:
        batch.add_column(
            sa.Column(
                "allowed_operations",
                sa.String(length=64),
                server_default="echo,find,get,move,store",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("peer") as batch:
        batch.drop_column("allowed_operations")
