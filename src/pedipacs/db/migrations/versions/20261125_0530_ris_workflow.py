"""RIS workflow: performed procedure steps (MPPS), storage commitment requests as durable jobs,
image exceptions (studies matching no order or another patient's order), and on each study the
order it was matched to and whether its patient changed after the images came.

Issue 5: the modality reports progress, asks for commitment, and its images are reconciled
with their order; a newborn's merge changes the identity every answer carries.

Revision ID: 5e2b8c4d7a61
Revises: a3c7e1f95b08
Create Date: 2026-11-25 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e2b8c4d7a61"
down_revision: str | None = "a3c7e1f95b08"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MOMENT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("order_fk", ID, nullable=True))
        batch.add_column(
            sa.Column("identity_changed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_foreign_key(
            "fk_study_order_fk_imaging_order", "imaging_order", ["order_fk"], ["id"]
        )
    op.create_table(
        "performed_step",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("calling_ae_title", sa.String(16), nullable=False),
        sa.Column("order_fk", ID, sa.ForeignKey("imaging_order.id",
                  name="fk_performed_step_order_fk_imaging_order"), nullable=True),
        sa.Column("scheduled_step_fk", ID, sa.ForeignKey("scheduled_step.id",
                  name="fk_performed_step_scheduled_step_fk_scheduled_step"), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=True),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_performed_step"),
        sa.UniqueConstraint("sop_instance_uid", name="uq_performed_step_sop_instance_uid"),
    )  # fmt: skip
    op.create_index("ix_performed_step_order_fk", "performed_step", ["order_fk"])
    op.create_table(
        "commitment_request",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("transaction_uid", sa.String(64), nullable=False),
        sa.Column("requester_ae_title", sa.String(16), nullable=False),
        sa.Column("references", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", MOMENT, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("reported_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_commitment_request"),
    )
    op.create_index("ix_commitment_request_state_due_at", "commitment_request", ["state", "due_at"])
    op.create_table(
        "image_exception",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("study_fk", ID, sa.ForeignKey("study.id",
                  name="fk_image_exception_study_fk_study"), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("order_fk", ID, sa.ForeignKey("imaging_order.id",
                  name="fk_image_exception_order_fk_imaging_order"), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolved_at", MOMENT, nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_image_exception"),
        sa.UniqueConstraint("study_fk", name="uq_image_exception_study_fk"),
    )  # fmt: skip
    op.create_index("ix_image_exception_state", "image_exception", ["state"])


def downgrade() -> None:
    op.drop_index("ix_image_exception_state", "image_exception")
    op.drop_table("image_exception")
    op.drop_index("ix_commitment_request_state_due_at", "commitment_request")
    op.drop_table("commitment_request")
    op.drop_index("ix_performed_step_order_fk", "performed_step")
    op.drop_table("performed_step")
    with op.batch_alter_table("study") as batch:
        batch.drop_constraint("fk_study_order_fk_imaging_order", type_="foreignkey")
        batch.drop_column("identity_changed")
        batch.drop_column("order_fk")
