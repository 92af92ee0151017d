"""The audit trail, written in the same transaction as the action it records.

Event IDs are those of DICOM PS3.15 A.5 (DCM 1101xx), so an ATNA export can name them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from pedipacs.db.tables import AuditEvent
from pedipacs.model.origin import Origin

AUDIT_EVENT: Table = AuditEvent.__table__  # type: ignore[assignment]
_INSERT_AUDIT_EVENT = insert(AUDIT_EVENT)


class AuditEventId(Enum):
    """(code, meaning) of the DICOM audit events pedipacs records."""

    APPLICATION_ACTIVITY = ("110100", "Application Activity")
    AUDIT_LOG_USED = ("110101", "Audit Log Used")
    BEGIN_TRANSFERRING = ("110102", "Begin Transferring DICOM Instances")
    INSTANCES_ACCESSED = ("110103", "DICOM Instances Accessed")
    INSTANCES_TRANSFERRED = ("110104", "DICOM Instances Transferred")
    STUDY_DELETED = ("110105", "DICOM Study Deleted")
    EXPORT = ("110106", "Export")
    IMPORT = ("110107", "Import")
    NETWORK_ENTRY = ("110108", "Network Entry")
    ORDER_RECORD = ("110109", "Order Record")
    PATIENT_RECORD = ("110110", "Patient Record")
    PROCEDURE_RECORD = ("110111", "Procedure Record")
    QUERY = ("110112", "Query")
    SECURITY_ALERT = ("110113", "Security Alert")
    USER_AUTHENTICATION = ("110114", "User Authentication")


class AuditOutcome(int, Enum):
    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited action; extend with fields, never positional arguments."""

    event: AuditEventId
    action: str  # C create, R read, U update, D delete, E execute
    origin: Origin
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    patient_id: str | None = None
    study_instance_uid: str | None = None
    detail: str | None = None


def record(session: Session, entry: AuditRecord) -> None:
    """Add the audit row to the caller's transaction; it commits (or not) with the action."""
    code, meaning = entry.event.value
    session.connection().execute(
        _INSERT_AUDIT_EVENT,
        dict(
            event_id=code,
            event_name=meaning,
            event_action=entry.action,
            outcome=int(entry.outcome),
            door=str(entry.origin.door),
            user=entry.origin.user,
            remote_host=entry.origin.remote_host,
            remote_ae=entry.origin.remote_ae,
            patient_id=entry.patient_id,
            study_instance_uid=entry.study_instance_uid,
            detail=(entry.detail or "")[:4000] or None,
        ),
    )
