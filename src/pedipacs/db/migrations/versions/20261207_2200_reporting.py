"""Reading and reporting: reports with every version kept, reading claims, critical results,
site report templates, the durable job table, and on each order its point of care (PV1-3)
and when its first images arrived.

Orders and studies get the indexes the reading worklist and turnaround times need (a study by its
order, an order by its images' arrival).

Issue 6: radiologists read from a worklist ordered by urgency, write and sign reports, flag
critical results; released reports are sent on by background jobs (HL7 ORU^R01, the report as
an Encapsulated PDF in the study) that survive a restart. Orders already matched to images get
the moment their first study arrived as their time of arrival.

Revision ID: 6f3a9c1e2b75
Revises: 5e2b8c4d7a61
Create Date: 2026-12-07 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6f3a9c1e2b75"
down_revision: str | None = "5e2b8c4d7a61"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MOMENT = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def _fk(name: str, table: str, target: str) -> sa.Column[int]:
    return sa.Column(
        name, ID, sa.ForeignKey(f"{target}.id", name=f"fk_{table}_{name}_{target}"), nullable=False
    )


def upgrade() -> None:
    with op.batch_alter_table("imaging_order") as batch:
        batch.add_column(sa.Column("patient_location", sa.String(64), nullable=True))
        batch.add_column(sa.Column("images_arrived_at", MOMENT, nullable=True))
    first_study = (
        sa.select(sa.func.min(sa.table("study", sa.column("created_at"),
                                       sa.column("order_fk")).c.created_at))
        .where(sa.text("study.order_fk = imaging_order.id"))
        .scalar_subquery()
    )  # fmt: skip
    op.execute(
        sa.table("imaging_order", sa.column("images_arrived_at"))
        .update()
        .values(images_arrived_at=first_study)
    )
    # The reading worklist and turnaround times look studies up by their order, and orders by
    # the arrival of their images.
    op.create_index("ix_study_order_fk", "study", ["order_fk"])
    op.create_index("ix_imaging_order_images_arrived_at", "imaging_order", ["images_arrived_at"])
    op.create_table(
        "job",
        _id(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", MOMENT, nullable=False),
        sa.Column("leased_by", sa.String(128), nullable=True),
        sa.Column("lease_until", MOMENT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("finished_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job"),
    )
    op.create_index("ix_job_state_due_at", "job", ["state", "due_at"])
    op.create_index("ix_job_kind_state", "job", ["kind", "state"])
    op.create_index("ix_job_subject", "job", ["subject"])
    op.create_table(
        "report",
        _id(),
        _fk("order_fk", "report", "imaging_order"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("template_key", sa.String(64), nullable=False),
        sa.Column("sections", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.Column("preliminary_at", MOMENT, nullable=True),
        sa.Column("preliminary_by", sa.String(128), nullable=True),
        sa.Column("signed_at", MOMENT, nullable=True),
        sa.Column("signed_by", sa.String(128), nullable=True),
        sa.Column("signed_by_name", sa.String(324), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_report"),
        sa.UniqueConstraint("order_fk", name="uq_report_order_fk"),
    )
    op.create_index("ix_report_status", "report", ["status"])
    op.create_index("ix_report_signed_at", "report", ["signed_at"])
    op.create_table(
        "report_version",
        _id(),
        _fk("report_fk", "report_version", "report"),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sections", sa.Text(), nullable=False),
        sa.Column("addendum", sa.Text(), nullable=True),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_report_version"),
        sa.UniqueConstraint("report_fk", "number", name="uq_report_version_report_fk_number"),
    )
    op.create_table(
        "reading_claim",
        _id(),
        _fk("order_fk", "reading_claim", "imaging_order"),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("claimed_at", MOMENT, nullable=False),
        sa.Column("expires_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reading_claim"),
        sa.UniqueConstraint("order_fk", name="uq_reading_claim_order_fk"),
    )
    op.create_table(
        "critical_result",
        _id(),
        _fk("report_fk", "critical_result", "report"),
        _fk("order_fk", "critical_result", "imaging_order"),
        sa.Column("finding", sa.Text(), nullable=False),
        sa.Column("flagged_by", sa.String(128), nullable=False),
        sa.Column("flagged_at", MOMENT, nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", MOMENT, nullable=True),
        sa.Column("acknowledgement_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_critical_result"),
    )
    op.create_index("ix_critical_result_acknowledged_at", "critical_result", ["acknowledged_at"])
    op.create_index("ix_critical_result_order_fk", "critical_result", ["order_fk"])
    op.create_table(
        "report_template",
        _id(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("title", sa.String(128), nullable=False),
        sa.Column("modalities", sa.String(64), nullable=False),
        sa.Column("sections", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_report_template"),
        sa.UniqueConstraint("key", name="uq_report_template_key"),
    )


def downgrade() -> None:
    op.drop_table("report_template")
    op.drop_index("ix_critical_result_order_fk", "critical_result")
    op.drop_index("ix_critical_result_acknowledged_at", "critical_result")
    op.drop_table("critical_result")
    op.drop_table("reading_claim")
    op.drop_table("report_version")
    op.drop_index("ix_report_signed_at", "report")
    op.drop_index("ix_report_status", "report")
    op.drop_table("report")
    op.drop_index("ix_job_subject", "job")
    op.drop_index("ix_job_kind_state", "job")
    op.drop_index("ix_job_state_due_at", "job")
    op.drop_table("job")
    op.drop_index("ix_imaging_order_images_arrived_at", "imaging_order")
    op.drop_index("ix_study_order_fk", "study")
    with op.batch_alter_table("imaging_order") as batch:
        batch.drop_column("images_arrived_at")
        batch.drop_column("patient_location")
