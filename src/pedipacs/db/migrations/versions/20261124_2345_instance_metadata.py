"""Instance metadata: each instance's DICOM JSON, encoded at ingest, for WADO-RS metadata.

WADO-RS metadata of a 300-instance study must not re-read 300 files; the JSON is written in the
ingest transaction beside the index row. Instances stored before this revision get their
metadata read from their file on first request (see `archive/retrieve.py`).

Revision ID: 4c1d2e7f9a10
Revises: 920b5b6bbc69
Create Date: 2026-11-24 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c1d2e7f9a10"
down_revision: str | None = "920b5b6bbc69"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_metadata",
        sa.Column(
            "instance_fk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dicom_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_fk"], ["instance.id"], name=op.f("fk_instance_metadata_instance_fk_instance")
        ),
        sa.PrimaryKeyConstraint("instance_fk", name=op.f("pk_instance_metadata")),
    )


def downgrade() -> None:
    op.drop_table("instance_metadata")
