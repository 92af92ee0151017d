"""Archive core: patient, study, series and instance index, peers, conflicts, changes, audit.

The first schema. Study-level aggregates (modalities, counts) are columns kept exact by the
ingest transaction so that C-FIND and QIDO answer without counting at query time.

Revision ID: 920b5b6bbc69
Revises:
Create Date: 2026-11-24 20:24:22.972005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "920b5b6bbc69"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=16), nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column("event_action", sa.String(length=1), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("door", sa.String(length=8), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=True),
        sa.Column("remote_host", sa.String(length=255), nullable=True),
        sa.Column("remote_ae", sa.String(length=16), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_event_patient_id", ["patient_id"], unique=False)

    op.create_table(
        "change",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("change_type", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change")),
    )
    with op.batch_alter_table("change", schema=None) as batch_op:
        batch_op.create_index("ix_change_at", ["at"], unique=False)

    op.create_table(
        "instance_conflict",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=False),
        sa.Column("resolution", sa.String(length=32), nullable=False),
        sa.Column("stored_sha256", sa.String(length=64), nullable=True),
        sa.Column("received_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("received_series_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_conflict")),
    )
    with op.batch_alter_table("instance_conflict", schema=None) as batch_op:
        batch_op.create_index(
            "ix_instance_conflict_sop_instance_uid", ["sop_instance_uid"], unique=False
        )

    op.create_table(
        "patient",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "patient_id",
            sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("issuer_of_patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=True),
        sa.Column(
            "patient_name_search",
            sa.String(length=324).with_variant(sa.String(length=324, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_birth_time", sa.Time(), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("number_of_patient_related_studies", sa.Integer(), nullable=False),
        sa.Column("number_of_patient_related_series", sa.Integer(), nullable=False),
        sa.Column("number_of_patient_related_instances", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
        sa.UniqueConstraint(
            "patient_id",
            "issuer_of_patient_id",
            name=op.f("uq_patient_patient_id_issuer_of_patient_id"),
        ),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index("ix_patient_patient_birth_date", ["patient_birth_date"], unique=False)
        batch_op.create_index(
            "ix_patient_patient_name_search", ["patient_name_search"], unique=False
        )

    op.create_table(
        "peer",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_peer_ae_title")),
        sa.UniqueConstraint("name", name=op.f("uq_peer_name")),
    )
    op.create_table(
        "study",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "patient_fk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.Time(), nullable=True),
        sa.Column(
            "accession_number",
            sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("study_id", sa.String(length=64), nullable=True),
        sa.Column("study_description", sa.String(length=256), nullable=True),
        sa.Column("referring_physician_name", sa.String(length=324), nullable=True),
        sa.Column(
            "referring_physician_name_search",
            sa.String(length=324).with_variant(sa.String(length=324, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("patient_age", sa.String(length=16), nullable=True),
        sa.Column("patient_size", sa.String(length=16), nullable=True),
        sa.Column("patient_weight", sa.String(length=16), nullable=True),
        sa.Column("institution_name", sa.String(length=128), nullable=True),
        sa.Column("modalities_in_study", sa.String(length=256), nullable=False),
        sa.Column("sop_classes_in_study", sa.Text(), nullable=False),
        sa.Column("number_of_study_related_series", sa.Integer(), nullable=False),
        sa.Column("number_of_study_related_instances", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_fk"], ["patient.id"], name=op.f("fk_study_patient_fk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index("ix_study_accession_number", ["accession_number"], unique=False)
        batch_op.create_index("ix_study_patient_fk", ["patient_fk"], unique=False)
        batch_op.create_index(
            "ix_study_referring_physician_name_search",
            ["referring_physician_name_search"],
            unique=False,
        )
        batch_op.create_index("ix_study_study_date", ["study_date"], unique=False)
        batch_op.create_index("ix_study_study_instance_uid", ["study_instance_uid"], unique=True)

    op.create_table(
        "series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("study_fk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=256), nullable=True),
        sa.Column("series_date", sa.Date(), nullable=True),
        sa.Column("series_time", sa.Time(), nullable=True),
        sa.Column("body_part_examined", sa.String(length=64), nullable=True),
        sa.Column("laterality", sa.String(length=16), nullable=True),
        sa.Column("protocol_name", sa.String(length=64), nullable=True),
        sa.Column("station_name", sa.String(length=64), nullable=True),
        sa.Column("manufacturer", sa.String(length=64), nullable=True),
        sa.Column("institution_name", sa.String(length=128), nullable=True),
        sa.Column("performed_procedure_step_start_date", sa.Date(), nullable=True),
        sa.Column("performed_procedure_step_start_time", sa.Time(), nullable=True),
        sa.Column("number_of_series_related_instances", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_fk"], ["study.id"], name=op.f("fk_series_study_fk_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index("ix_series_modality", ["modality"], unique=False)
        batch_op.create_index("ix_series_series_instance_uid", ["series_instance_uid"], unique=True)
        batch_op.create_index("ix_series_study_fk", ["study_fk"], unique=False)

    op.create_table(
        "instance",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "series_fk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("content_date", sa.Date(), nullable=True),
        sa.Column("content_time", sa.Time(), nullable=True),
        sa.Column("acquisition_number", sa.Integer(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("blob_key", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("dataset_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_ae_title", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_fk"], ["series.id"], name=op.f("fk_instance_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index("ix_instance_blob_key", ["blob_key"], unique=True)
        batch_op.create_index(
            "ix_instance_series_fk_instance_number", ["series_fk", "instance_number"], unique=False
        )
        batch_op.create_index("ix_instance_sop_instance_uid", ["sop_instance_uid"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_sop_instance_uid")
        batch_op.drop_index("ix_instance_series_fk_instance_number")
        batch_op.drop_index("ix_instance_blob_key")

    op.drop_table("instance")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index("ix_series_study_fk")
        batch_op.drop_index("ix_series_series_instance_uid")
        batch_op.drop_index("ix_series_modality")

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index("ix_study_study_instance_uid")
        batch_op.drop_index("ix_study_study_date")
        batch_op.drop_index("ix_study_referring_physician_name_search")
        batch_op.drop_index("ix_study_patient_fk")
        batch_op.drop_index("ix_study_accession_number")

    op.drop_table("study")
    op.drop_table("peer")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_patient_name_search")
        batch_op.drop_index("ix_patient_patient_birth_date")

    op.drop_table("patient")
    with op.batch_alter_table("instance_conflict", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_conflict_sop_instance_uid")

    op.drop_table("instance_conflict")
    with op.batch_alter_table("change", schema=None) as batch_op:
        batch_op.drop_index("ix_change_at")

    op.drop_table("change")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_patient_id")
        batch_op.drop_index("ix_audit_event_at")

    op.drop_table("audit_event")
