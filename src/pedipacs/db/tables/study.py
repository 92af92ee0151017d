"""Study, series and instance: the archive's index, with the aggregates C-FIND returns."""

from __future__ import annotations

from datetime import date, time

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, BigId, primary_id, uid, utc_datetime, utc_now
from pedipacs.db.tables.columns import search_string


class Study(Base):
    __tablename__ = "study"
    __table_args__ = (
        Index("ix_study_study_instance_uid", "study_instance_uid", unique=True),
        Index("ix_study_patient_fk", "patient_fk"),
        Index("ix_study_order_fk", "order_fk"),
        Index("ix_study_study_date", "study_date"),
        Index("ix_study_accession_number", "accession_number"),
        Index("ix_study_referring_physician_name_search", "referring_physician_name_search"),
    )

    id: Mapped[primary_id]
    patient_fk: Mapped[int] = mapped_column(BigId, ForeignKey("patient.id"))
    study_instance_uid: Mapped[uid]
    study_date: Mapped[date | None] = mapped_column(Date)
    study_time: Mapped[time | None] = mapped_column(Time)
    accession_number: Mapped[str | None] = mapped_column(search_string(64))
    study_id: Mapped[str | None] = mapped_column(String(64))
    study_description: Mapped[str | None] = mapped_column(String(256))
    referring_physician_name: Mapped[str | None] = mapped_column(String(324))
    referring_physician_name_search: Mapped[str | None] = mapped_column(search_string(324))
    patient_age: Mapped[str | None] = mapped_column(String(16))
    patient_size: Mapped[str | None] = mapped_column(String(16))
    patient_weight: Mapped[str | None] = mapped_column(String(16))
    institution_name: Mapped[str | None] = mapped_column(String(128))
    # Backslash-separated, sorted: the value of ModalitiesInStudy.
    modalities_in_study: Mapped[str] = mapped_column(String(256), default="")
    sop_classes_in_study: Mapped[str] = mapped_column(Text, default="")
    number_of_study_related_series: Mapped[int] = mapped_column(Integer, default=0)
    number_of_study_related_instances: Mapped[int] = mapped_column(Integer, default=0)
    # The order the images were matched to (by Study Instance UID or accession number).
    order_fk: Mapped[int | None] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    # Set once the patient changed after the images came (merge, new identifier, an exception
    # attached to another child): answers then carry the index's patient, not the file's.
    identity_changed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[utc_datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (
        Index("ix_series_series_instance_uid", "series_instance_uid", unique=True),
        Index("ix_series_study_fk", "study_fk"),
        Index("ix_series_modality", "modality"),
    )

    id: Mapped[primary_id]
    study_fk: Mapped[int] = mapped_column(BigId, ForeignKey("study.id"))
    series_instance_uid: Mapped[uid]
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(String(256))
    series_date: Mapped[date | None] = mapped_column(Date)
    series_time: Mapped[time | None] = mapped_column(Time)
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    laterality: Mapped[str | None] = mapped_column(String(16))
    protocol_name: Mapped[str | None] = mapped_column(String(64))
    station_name: Mapped[str | None] = mapped_column(String(64))
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    institution_name: Mapped[str | None] = mapped_column(String(128))
    performed_procedure_step_start_date: Mapped[date | None] = mapped_column(Date)
    performed_procedure_step_start_time: Mapped[time | None] = mapped_column(Time)
    number_of_series_related_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[utc_datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class Instance(Base):
    __tablename__ = "instance"
    __table_args__ = (
        Index("ix_instance_sop_instance_uid", "sop_instance_uid", unique=True),
        Index("ix_instance_series_fk_instance_number", "series_fk", "instance_number"),
        Index("ix_instance_blob_key", "blob_key", unique=True),
    )

    id: Mapped[primary_id]
    series_fk: Mapped[int] = mapped_column(BigId, ForeignKey("series.id"))
    sop_instance_uid: Mapped[uid]
    sop_class_uid: Mapped[uid]
    transfer_syntax_uid: Mapped[uid]
    instance_number: Mapped[int | None] = mapped_column(Integer)
    content_date: Mapped[date | None] = mapped_column(Date)
    content_time: Mapped[time | None] = mapped_column(Time)
    acquisition_number: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    # Opaque key in the blob store; never derived from a UID.
    blob_key: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the whole stored file
    # Of the dataset without File Meta: what "identical re-send" compares.
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    source_ae_title: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[utc_datetime] = mapped_column(default=utc_now)


class InstanceMetadata(Base):
    """The instance's DICOM JSON (PS3.18 F), encoded once at ingest for WADO-RS metadata.

    Kept apart from `instance` so that queries scanning the index do not read it.
    """

    __tablename__ = "instance_metadata"

    instance_fk: Mapped[int] = mapped_column(BigId, ForeignKey("instance.id"), primary_key=True)
    dicom_json: Mapped[str] = mapped_column(Text)


class InstanceConflict(Base):
    """A re-sent SOP Instance UID with other content or identity, and what the policy did."""

    __tablename__ = "instance_conflict"
    __table_args__ = (Index("ix_instance_conflict_sop_instance_uid", "sop_instance_uid"),)

    id: Mapped[primary_id]
    sop_instance_uid: Mapped[uid]
    reason: Mapped[str] = mapped_column(String(256))
    resolution: Mapped[str] = mapped_column(String(32))
    stored_sha256: Mapped[str | None] = mapped_column(String(64))
    received_sha256: Mapped[str] = mapped_column(String(64))
    received_study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    received_series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[utc_datetime] = mapped_column(default=utc_now)
