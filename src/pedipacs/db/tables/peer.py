"""Known remote Application Entities: C-MOVE destinations, and who may ask what."""

from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, primary_id, utc_datetime, utc_now


class PeerRow(Base):
    __tablename__ = "peer"
    __table_args__ = (UniqueConstraint("name"), UniqueConstraint("ae_title"))

    id: Mapped[primary_id]
    name: Mapped[str] = mapped_column(String(64))
    ae_title: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    # Comma-separated DimseOperation values this peer may ask for (echo, store, find, ...).
    allowed_operations: Mapped[str] = mapped_column(
        String(64), server_default="echo,find,get,move,store"
    )
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
