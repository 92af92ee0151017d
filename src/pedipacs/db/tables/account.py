"""Accounts, their sign-in sessions and tokens, care teams and break-the-glass accesses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, BigId, primary_id, utc_datetime, utc_now


class UserAccount(Base):
    """A person who signs in: local password (argon2) or an OpenID Connect identity."""

    __tablename__ = "user_account"
    __table_args__ = (
        UniqueConstraint("username"),
        UniqueConstraint("oidc_issuer", "oidc_subject"),
    )

    id: Mapped[primary_id]
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128))
    # Comma-separated security.permissions.Role values.
    roles: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # The first administrator's printed one-time password must be replaced at first sign-in.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    failed_signins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)


class UserSession(Base):
    """A signed-in page session or an API token. Only the SHA-256 of the secret is kept."""

    __tablename__ = "user_session"
    __table_args__ = (UniqueConstraint("token_hash"), Index("ix_user_session_user_id", "user_id"))

    id: Mapped[primary_id]
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "session" (cookie) or "token" (bearer)
    label: Mapped[str | None] = mapped_column(String(128))
    # Sent back with every state-changing page request made with the session cookie.
    csrf_token: Mapped[str] = mapped_column(String(64))
    remote_host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    last_seen_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[utc_datetime]
    # Page sessions also end after this many minutes without a request (automatic logoff).
    idle_minutes: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CareTeamMember(Base):
    """A referring clinician caring for a patient: they see that patient's images."""

    __tablename__ = "care_team_member"
    __table_args__ = (UniqueConstraint("user_id", "patient_id"),)

    id: Mapped[primary_id]
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user_account.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[utc_datetime] = mapped_column(default=utc_now)


class BreakGlassAccess(Base):
    """An emergency access to a patient outside one's care: reason, time limit, review."""

    __tablename__ = "break_glass_access"
    __table_args__ = (Index("ix_break_glass_access_user_id_patient_id", "user_id", "patient_id"),)

    id: Mapped[primary_id]
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user_account.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    remote_host: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[utc_datetime]
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditExportCursor(Base):
    """How far the audit trail has been sent to an external repository (ATNA syslog)."""

    __tablename__ = "audit_export_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigId, default=0)
    updated_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
