"""The patient as the archive knows it from the images (PS3.4 C.6.1.1.2 attributes)."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, BigId, primary_id, utc_datetime, utc_now
from pedipacs.db.tables.columns import search_string


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        UniqueConstraint("patient_id", "issuer_of_patient_id"),
        Index("ix_patient_patient_name_search", "patient_name_search"),
        Index("ix_patient_patient_birth_date", "patient_birth_date"),
    )

    id: Mapped[primary_id]
    patient_id: Mapped[str] = mapped_column(search_string(64))
    # '' when the images carry no issuer: NULLs would defeat the unique constraint.
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str | None] = mapped_column(String(324))
    # Alphabetic group, upper-cased, trailing empty components removed: what PN matching uses.
    patient_name_search: Mapped[str | None] = mapped_column(search_string(324))
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_birth_time: Mapped[time | None] = mapped_column(Time)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    # From the hospital (HL7 PID-21, -24, -25): the mother's identifier and the birth order,
    # which tie a newborn to their mother; a temporary identity is merged into a permanent one.
    mother_identifier: Mapped[str | None] = mapped_column(String(64))
    mother_issuer: Mapped[str | None] = mapped_column(String(64))
    multiple_birth: Mapped[str | None] = mapped_column(String(1))  # Y / N
    birth_order: Mapped[int | None] = mapped_column(Integer)
    is_temporary: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set on a patient merged into another (HL7 A40): the surviving record.
    merged_into_fk: Mapped[int | None] = mapped_column(BigId, ForeignKey("patient.id"))
    number_of_patient_related_studies: Mapped[int] = mapped_column(Integer, default=0)
    number_of_patient_related_series: Mapped[int] = mapped_column(Integer, default=0)
    number_of_patient_related_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
