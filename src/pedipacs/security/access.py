"""AccessPolicy: the one place where every door asks "may this principal do this?".

- `require(principal, permission, origin)` checks the role or peer grant; a refusal is audited
  (110113 Security Alert) before the door answers 401/403, a DIMSE failure status or an HL7 AR.
- `origin_for(principal, ...)` gives the Origin a request carries into the services, with the
  patients the principal may see: everyone for most roles, the patients in their care (plus
  break-the-glass accesses still running) for a referring clinician.
- Break-the-glass: a clinician states a reason and sees one more patient for a limited time;
  the start is audited as 110113 with the emergency-override type, and it waits on the
  administrators' report until one of them reviews it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc
from pedipacs.db.engine import Database
from pedipacs.db.tables import BreakGlassAccess, CareTeamMember, UserAccount
from pedipacs.errors import InvalidInput, NotFound, PermissionDenied
from pedipacs.model.origin import Door, Origin
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record
from pedipacs.security.permissions import Permission, Principal

# DICOM PS3.16 CID 403 (Security Alert Type): the emergency override event type codes.
EMERGENCY_OVERRIDE_STARTED = "(110127, DCM, Emergency Override Started)"
MINIMUM_REASON_LENGTH = 10


class NotPermittedError(PermissionDenied):
    """The principal's roles or peer grant do not include the permission asked for."""


@dataclass(frozen=True, slots=True)
class BreakGlass:
    id: int
    username: str
    patient_id: str
    reason: str
    remote_host: str | None
    started_at: datetime
    expires_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None


class AccessPolicy:
    def __init__(self, database: Database, *, break_glass: timedelta = timedelta(hours=1)) -> None:
        self._database = database
        self._break_glass = break_glass

    def require(self, principal: Principal, permission: Permission, origin: Origin) -> None:
        """Raise NotPermittedError, audited, unless the principal holds `permission`."""
        if principal.may(permission):
            return
        self.record_refusal(origin, f"{permission} by {principal.name} ({principal.kind})")
        raise NotPermittedError(f"{principal.name} is not allowed to {permission}")

    def record_refusal(self, origin: Origin, what: str) -> None:
        """Put a refused request, association or connection on the audit trail (110113)."""
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    AuditEventId.SECURITY_ALERT,
                    "E",
                    origin,
                    outcome=AuditOutcome.MINOR_FAILURE,
                    detail=f"refused: {what}",
                ),
            )

    def origin_for(self, principal: Principal, door: Door, remote_host: str | None) -> Origin:
        return Origin(
            door,
            user=principal.name,
            remote_host=remote_host,
            patient_scope=self.patient_scope(principal),
        )

    def patient_scope(self, principal: Principal) -> frozenset[str] | None:
        """None when the principal sees every patient; else the patient IDs it may see."""
        if principal.sees_every_patient or principal.user_id is None:
            return None if principal.sees_every_patient else frozenset()
        now = datetime.now(UTC)
        with self._database.reading() as session:
            cared_for = session.scalars(
                select(CareTeamMember.patient_id).where(CareTeamMember.user_id == principal.user_id)
            ).all()
            opened = session.scalars(
                select(BreakGlassAccess.patient_id).where(
                    BreakGlassAccess.user_id == principal.user_id,
                    BreakGlassAccess.expires_at > now,
                )
            ).all()
        return frozenset((*cared_for, *opened))

    # -- care teams -----------------------------------------------------------------------

    def add_to_care_team(self, username: str, patient_id: str, origin: Origin) -> None:
        patient_id = _patient_id(patient_id)
        with self._database.unit_of_work() as session:
            user_id = _user_id(session, username)
            exists = session.scalar(
                select(CareTeamMember.id).where(
                    CareTeamMember.user_id == user_id, CareTeamMember.patient_id == patient_id
                )
            )
            if exists is None:
                session.add(CareTeamMember(user_id=user_id, patient_id=patient_id))
                record(
                    session,
                    AuditRecord(
                        AuditEventId.SECURITY_ALERT, "C", origin, patient_id=patient_id,
                        detail=f"care team: {username} now cares for patient {patient_id}",
                    ),
                )  # fmt: skip

    def remove_from_care_team(self, username: str, patient_id: str, origin: Origin) -> None:
        with self._database.unit_of_work() as session:
            user_id = _user_id(session, username)
            removed = session.execute(
                delete(CareTeamMember).where(
                    CareTeamMember.user_id == user_id, CareTeamMember.patient_id == patient_id
                )
            ).rowcount  # type: ignore[attr-defined]
            if not removed:
                raise NotFound(f"{username} is not in the care team of patient {patient_id}")
            record(
                session,
                AuditRecord(
                    AuditEventId.SECURITY_ALERT, "D", origin, patient_id=patient_id,
                    detail=f"care team: {username} no longer cares for patient {patient_id}",
                ),
            )  # fmt: skip

    # -- break-the-glass ------------------------------------------------------------------

    def break_glass(
        self, principal: Principal, patient_id: str, reason: str, origin: Origin
    ) -> BreakGlass:
        """Open `patient_id` to the principal for the configured time, with a stated reason."""
        self.require(principal, Permission.BREAK_GLASS, origin)
        patient_id = _patient_id(patient_id)
        reason = " ".join(reason.split())
        if len(reason) < MINIMUM_REASON_LENGTH:
            raise InvalidInput(
                f"state the reason for the emergency access ({MINIMUM_REASON_LENGTH} characters "
                "or more)"
            )
        now = datetime.now(UTC)
        row = BreakGlassAccess(
            user_id=principal.user_id,
            patient_id=patient_id,
            reason=reason[:2000],
            remote_host=origin.remote_host,
            started_at=now,
            expires_at=now + self._break_glass,
        )
        with self._database.unit_of_work() as session:
            session.add(row)
            session.flush()
            record(
                session,
                AuditRecord(
                    AuditEventId.SECURITY_ALERT,
                    "E",
                    origin,
                    patient_id=patient_id,
                    detail=f"{EMERGENCY_OVERRIDE_STARTED} break-the-glass by {principal.name} "
                    f"until {row.expires_at:%Y-%m-%d %H:%M} UTC: {reason}",
                ),
            )
            return _break_glass(row, principal.name)

    def break_glass_report(self, *, unreviewed_only: bool = True) -> list[BreakGlass]:
        """Break-the-glass accesses, newest first, for the administrators' review."""
        statement = (
            select(BreakGlassAccess, UserAccount.username)
            .join(UserAccount, UserAccount.id == BreakGlassAccess.user_id)
            .order_by(BreakGlassAccess.started_at.desc())
        )
        if unreviewed_only:
            statement = statement.where(BreakGlassAccess.reviewed_at.is_(None))
        with self._database.reading() as session:
            return [_break_glass(row, name) for row, name in session.execute(statement)]

    def review_break_glass(self, access_id: int, reviewer: Principal, origin: Origin) -> None:
        self.require(reviewer, Permission.ADMINISTER, origin)
        with self._database.unit_of_work() as session:
            row = session.get(BreakGlassAccess, access_id)
            if row is None:
                raise NotFound(f"no break-the-glass access {access_id}")
            if row.reviewed_at is None:
                row.reviewed_at = datetime.now(UTC)
                row.reviewed_by = reviewer.name
                record(
                    session,
                    AuditRecord(
                        AuditEventId.SECURITY_ALERT, "U", origin, patient_id=row.patient_id,
                        detail=f"break-the-glass access {access_id} reviewed by {reviewer.name}",
                    ),
                )  # fmt: skip


def _patient_id(value: str) -> str:
    patient_id = value.strip()
    if not 0 < len(patient_id) <= 64:
        raise InvalidInput("a patient ID has 1 to 64 characters")
    return patient_id


def _user_id(session: Session, username: str) -> int:
    user_id = session.scalar(
        select(UserAccount.id).where(UserAccount.username == username.strip().lower())
    )
    if user_id is None:
        raise NotFound(f"no account named {username!r}")
    return int(user_id)


def _break_glass(row: BreakGlassAccess, username: str) -> BreakGlass:
    return BreakGlass(
        id=row.id,
        username=username,
        patient_id=row.patient_id,
        reason=row.reason,
        remote_host=row.remote_host,
        started_at=aware_utc(row.started_at),
        expires_at=aware_utc(row.expires_at),
        reviewed_by=row.reviewed_by,
        reviewed_at=aware_utc(row.reviewed_at) if row.reviewed_at else None,
    )
