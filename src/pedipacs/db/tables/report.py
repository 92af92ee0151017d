"""Reading and reporting: the report of an exam with every version it went through, the claim
a radiologist holds on an exam while reading it, critical results waiting for the referring
clinician's acknowledgement, and the report templates a site adds to the built-in ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, BigId, primary_id, utc_datetime, utc_now


class Report(Base):
    """The report of one exam (order), as it stands: its status, its current text (sections as
    JSON) and who moved it along. Each change also leaves a `ReportVersion`; a signed report's
    text is never changed again, only followed by addenda."""

    __tablename__ = "report"
    __table_args__ = (
        UniqueConstraint("order_fk"),
        Index("ix_report_status", "status"),
        Index("ix_report_signed_at", "signed_at"),
    )

    id: Mapped[primary_id]
    order_fk: Mapped[int] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    status: Mapped[str] = mapped_column(String(16))  # draft, preliminary, final, amended
    template_key: Mapped[str] = mapped_column(String(64))
    sections: Mapped[str] = mapped_column(Text)  # JSON {section key: text}
    # The number of the newest version: a change names the version it was made on, so two
    # people editing at once cannot overwrite each other unseen.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    preliminary_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    preliminary_by: Mapped[str | None] = mapped_column(String(128))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signed_by: Mapped[str | None] = mapped_column(String(128))
    signed_by_name: Mapped[str | None] = mapped_column(String(324))  # DICOM PN form


class ReportVersion(Base):
    """Every version of a report, never changed: drafts as saved, the preliminary and final
    texts as signed, and each addendum."""

    __tablename__ = "report_version"
    __table_args__ = (UniqueConstraint("report_fk", "number"),)

    id: Mapped[primary_id]
    report_fk: Mapped[int] = mapped_column(BigId, ForeignKey("report.id"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... in order
    kind: Mapped[str] = mapped_column(String(16))  # draft, preliminary, final, addendum
    sections: Mapped[str] = mapped_column(Text)  # JSON, the whole text at this version
    addendum: Mapped[str | None] = mapped_column(Text)  # the text an addendum added
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)


class ReadingClaim(Base):
    """A radiologist reading an exam: others see it taken until the claim is released, the
    report signed, or `expires_at` passes."""

    __tablename__ = "reading_claim"
    __table_args__ = (UniqueConstraint("order_fk"),)

    id: Mapped[primary_id]
    order_fk: Mapped[int] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    username: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[utc_datetime] = mapped_column()


class CriticalResult(Base):
    """A critical finding flagged in a report: open until the referring clinician (or someone
    on their behalf) acknowledges having received it."""

    __tablename__ = "critical_result"
    __table_args__ = (
        Index("ix_critical_result_acknowledged_at", "acknowledged_at"),
        Index("ix_critical_result_order_fk", "order_fk"),
    )

    id: Mapped[primary_id]
    report_fk: Mapped[int] = mapped_column(BigId, ForeignKey("report.id"))
    order_fk: Mapped[int] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    finding: Mapped[str] = mapped_column(Text)
    flagged_by: Mapped[str] = mapped_column(String(128))
    flagged_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledgement_note: Mapped[str | None] = mapped_column(Text)


class ReportTemplateRow(Base):
    """A report template a site added (the built-in ones live in `reports/templates.py`)."""

    __tablename__ = "report_template"
    __table_args__ = (UniqueConstraint("key"),)

    id: Mapped[primary_id]
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(128))
    modalities: Mapped[str] = mapped_column(String(64), default="")  # CR,DX
    sections: Mapped[str] = mapped_column(Text)  # JSON [{key, title, required, text}]
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
