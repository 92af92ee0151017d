"""RIS: a patient's other identifiers and newborn linkage, orders, requested procedures,
scheduled procedure steps, and the HL7 messages received.

Issue 5: orders from the hospital (HL7) or the orders page reach the modality worklist; a
newborn's temporary identity is merged into a permanent one later. Existing patients keep their
identity and get their primary identifier listed among their identifiers.

Revision ID: a3c7e1f95b08
Revises: 9b5a1d7e3f20
Create Date: 2026-11-25 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a3c7e1f95b08"
down_revision: str | None = "9b5a1d7e3f20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MOMENT = sa.DateTime(timezone=True)


def _search(length: int) -> sa.String:
    # The archive's search columns: byte-ordered on PostgreSQL so prefix ranges use the index.
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("mother_identifier", sa.String(64), nullable=True))
        batch.add_column(sa.Column("mother_issuer", sa.String(64), nullable=True))
        batch.add_column(sa.Column("multiple_birth", sa.String(1), nullable=True))
        batch.add_column(sa.Column("birth_order", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("is_temporary", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("merged_into_fk", ID, nullable=True))
        batch.create_foreign_key(
            "fk_patient_merged_into_fk_patient", "patient", ["merged_into_fk"], ["id"]
        )
    op.create_table(
        "patient_identifier",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("patient_fk", ID, sa.ForeignKey("patient.id",
                  name="fk_patient_identifier_patient_fk_patient"), nullable=False),
        sa.Column("identifier", _search(64), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("type_code", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_patient_identifier"),
        sa.UniqueConstraint("identifier", "issuer", name="uq_patient_identifier_identifier_issuer"),
    )  # fmt: skip
    op.create_index("ix_patient_identifier_patient_fk", "patient_identifier", ["patient_fk"])
    patients = sa.table(
        "patient", sa.column("id"), sa.column("patient_id"), sa.column("issuer_of_patient_id")
    )
    identifiers = sa.table(
        "patient_identifier",
        sa.column("patient_fk"),
        sa.column("identifier"),
        sa.column("issuer"),
    )
    op.execute(
        identifiers.insert().from_select(
            ["patient_fk", "identifier", "issuer"],
            sa.select(patients.c.id, patients.c.patient_id, patients.c.issuer_of_patient_id),
        )
    )
    op.create_table(
        "imaging_order",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("patient_fk", ID, sa.ForeignKey("patient.id",
                  name="fk_imaging_order_patient_fk_patient"), nullable=False),
        sa.Column("accession_number", _search(16), nullable=False),
        sa.Column("placer_order_number", sa.String(64), nullable=True),
        sa.Column("filler_order_number", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("referring_physician_name", sa.String(324), nullable=True),
        sa.Column("referring_physician_name_search", _search(324), nullable=True),
        sa.Column("ordering_department", sa.String(64), nullable=True),
        sa.Column("patient_class", sa.String(8), nullable=True),
        sa.Column("patient_weight", sa.String(16), nullable=True),
        sa.Column("ordered_at", MOMENT, nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_imaging_order"),
        sa.UniqueConstraint("accession_number", name="uq_imaging_order_accession_number"),
    )  # fmt: skip
    op.create_index("ix_imaging_order_patient_fk", "imaging_order", ["patient_fk"])
    op.create_index(
        "ix_imaging_order_placer_order_number", "imaging_order", ["placer_order_number"]
    )
    op.create_index("ix_imaging_order_status", "imaging_order", ["status"])
    op.create_table(
        "requested_procedure",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("order_fk", ID, sa.ForeignKey("imaging_order.id",
                  name="fk_requested_procedure_order_fk_imaging_order"), nullable=False),
        sa.Column("requested_procedure_id", _search(16), nullable=False),
        sa.Column("description", sa.String(64), nullable=True),
        sa.Column("code_value", sa.String(16), nullable=True),
        sa.Column("coding_scheme", sa.String(16), nullable=True),
        sa.Column("code_meaning", sa.String(64), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_requested_procedure"),
    )  # fmt: skip
    op.create_index(
        "ix_requested_procedure_study_instance_uid",
        "requested_procedure",
        ["study_instance_uid"],
        unique=True,
    )
    op.create_index("ix_requested_procedure_order_fk", "requested_procedure", ["order_fk"])
    op.create_table(
        "scheduled_step",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("procedure_fk", ID, sa.ForeignKey("requested_procedure.id",
                  name="fk_scheduled_step_procedure_fk_requested_procedure"), nullable=False),
        sa.Column("step_id", _search(16), nullable=False),
        sa.Column("station_ae_title", _search(16), nullable=True),
        sa.Column("station_name", sa.String(16), nullable=True),
        sa.Column("modality", _search(16), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("start_time", sa.Time(), nullable=True),
        sa.Column("description", sa.String(64), nullable=True),
        sa.Column("performing_physician_name", sa.String(324), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduled_step"),
    )  # fmt: skip
    for column in ("procedure_fk", "station_ae_title", "start_date", "status"):
        op.create_index(f"ix_scheduled_step_{column}", "scheduled_step", [column])
    op.create_table(
        "hl7_message",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("sending_application", sa.String(227), nullable=False),
        sa.Column("sending_facility", sa.String(227), nullable=False),
        sa.Column("control_id", sa.String(199), nullable=False),
        sa.Column("message_type", sa.String(16), nullable=False),
        sa.Column("received_at", MOMENT, nullable=False),
        sa.Column("ack_code", sa.String(2), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_hl7_message"),
        sa.UniqueConstraint(
            "sending_application", "sending_facility", "control_id",
            name="uq_hl7_message_sending_application_sending_facility_control_id",
        ),
    )  # fmt: skip
    op.create_index("ix_hl7_message_received_at", "hl7_message", ["received_at"])


def downgrade() -> None:
    op.drop_table("hl7_message")
    for column in ("procedure_fk", "station_ae_title", "start_date", "status"):
        op.drop_index(f"ix_scheduled_step_{column}", "scheduled_step")
    op.drop_table("scheduled_step")
    op.drop_index("ix_requested_procedure_order_fk", "requested_procedure")
    op.drop_index("ix_requested_procedure_study_instance_uid", "requested_procedure")
    op.drop_table("requested_procedure")
    for index in ("status", "placer_order_number", "patient_fk"):
        op.drop_index(f"ix_imaging_order_{index}", "imaging_order")
    op.drop_table("imaging_order")
    op.drop_index("ix_patient_identifier_patient_fk", "patient_identifier")
    op.drop_table("patient_identifier")
    with op.batch_alter_table("patient") as batch:
        batch.drop_constraint("fk_patient_merged_into_fk_patient", type_="foreignkey")
        for column in (
            "merged_into_fk",
            "is_temporary",
            "birth_order",
            "multiple_birth",
            "mother_issuer",
            "mother_identifier",
        ):
            batch.drop_column(column)  # fmt: skip
