"""Durable background work: one row per job, leased by a worker, retried with back-off, kept
after it ends so an administrator sees what was done and what failed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, primary_id, utc_datetime, utc_now


class Job(Base):
    """A job of some `kind` (`hl7-oru`, `report-object`, ...) with its JSON payload.

    A worker takes a due pending job by setting `state` to running and `lease_until` to a
    moment after which another worker may take it again (its worker died). The job ends done,
    or failed once `attempts` reaches `max_attempts`; until then a failure puts it back to
    pending with a later `due_at`.
    """

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_state_due_at", "state", "due_at"),
        Index("ix_job_kind_state", "kind", "state"),
        Index("ix_job_subject", "subject"),
    )

    id: Mapped[primary_id]
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    # What the job is about, for the administrator's list and to find a subject's jobs
    # (e.g. `report:12`).
    subject: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # pending, running, done, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    leased_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)  # what a finished job reports
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
