"""The audit trail: who did what, when, from where, to which patient (DICOM PS3.15 A.5 terms)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, primary_id, utc_datetime, utc_now


class AuditEvent(Base):
    """Append-only. Each record is chained to the one before by hash (`security/audit.py`)."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_at", "at"),
        Index("ix_audit_event_patient_id", "patient_id"),
        Index("ix_audit_event_sequence", "sequence", unique=True),
    )

    id: Mapped[primary_id]
    # Position in the hash chain: 1, 2, 3, ... with no gap.
    sequence: Mapped[int] = mapped_column(BigInteger)
    previous_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    # DCM event ID code (e.g. 110104 DICOM Instances Transferred) and its meaning.
    event_id: Mapped[str] = mapped_column(String(16))
    event_name: Mapped[str] = mapped_column(String(64))
    event_action: Mapped[str] = mapped_column(String(1))  # C R U D E
    outcome: Mapped[int] = mapped_column(Integer)  # 0 success, 4 minor, 8 serious, 12 major
    door: Mapped[str] = mapped_column(String(8))
    user: Mapped[str | None] = mapped_column(String(128))
    remote_host: Mapped[str | None] = mapped_column(String(255))
    remote_ae: Mapped[str | None] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class AuditChainHead(Base):
    """The last link of the audit chain: one row, locked by every transaction that audits, so
    records are chained in commit order even with several writers (PostgreSQL)."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(BigInteger)
    record_hash: Mapped[str] = mapped_column(String(64))
