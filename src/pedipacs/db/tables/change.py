"""The change feed: one row per change, written in the transaction of the change."""

from __future__ import annotations

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, primary_id, uid, utc_datetime, utc_now


class Change(Base):
    __tablename__ = "change"
    __table_args__ = (Index("ix_change_at", "at"),)

    seq: Mapped[primary_id]
    change_type: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    uid: Mapped[uid]
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[utc_datetime] = mapped_column(default=utc_now)
