"""Critical results: a finding the radiologist flagged when signing (a perforated appendix, a
tension pneumothorax, a non-accidental injury) stays open until the referring clinician, or
someone answering for them, acknowledges having received it. The list of open ones, oldest
first, is what the radiology team follows up by telephone."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import CriticalResult, ImagingOrder, Patient
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.model.origin import Origin
from pedipacs.model.reports import CriticalResultRecord
from pedipacs.reports.exams import patient_line
from pedipacs.security.audit import (
    AuditEventId,
    AuditRecord,
    audited_read,
    record,
    record_query,
)

MAX_NOTE = 1000
LIST_LIMIT = 500


class UnknownCriticalResultError(NotFound):
    """No critical result has that number (or it is about a patient the asker does not see)."""


class CriticalResultAcknowledgedError(Conflict):
    """A critical result is acknowledged once."""


def critical_result_records(
    session: Session, statement: Select[CriticalResult]
) -> tuple[CriticalResultRecord, ...]:
    rows = session.execute(
        statement.add_columns(ImagingOrder, Patient)
        .join(ImagingOrder, ImagingOrder.id == CriticalResult.order_fk)
        .join(Patient, Patient.id == ImagingOrder.patient_fk)
        .order_by(CriticalResult.flagged_at, CriticalResult.id)
    ).all()
    return tuple(
        CriticalResultRecord(
            id=critical.id,
            accession_number=order.accession_number,
            patient=patient_line(patient),
            finding=critical.finding,
            flagged_by=critical.flagged_by,
            flagged_at=aware_utc(critical.flagged_at),
            referring_physician=order.referring_physician_name,
            acknowledged_by=critical.acknowledged_by,
            acknowledged_at=aware_utc(critical.acknowledged_at)
            if critical.acknowledged_at is not None
            else None,
            acknowledgement_note=critical.acknowledgement_note,
        )
        for critical, order, patient in rows
    )


def _scoped(statement: Select[CriticalResult], origin: Origin) -> Select[CriticalResult]:
    if origin.patient_scope is None:
        return statement
    return statement.where(
        CriticalResult.order_fk.in_(
            select(ImagingOrder.id)
            .join(Patient, Patient.id == ImagingOrder.patient_fk)
            .where(Patient.patient_id.in_(sorted(origin.patient_scope)))
        )
    )


class CriticalResultService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def open_results(self, origin: Origin) -> tuple[CriticalResultRecord, ...]:
        """Critical results not yet acknowledged, oldest first (those the asker may see)."""

        def read(session: Session) -> tuple[CriticalResultRecord, ...]:
            statement = _scoped(
                select(CriticalResult).where(CriticalResult.acknowledged_at.is_(None)), origin
            ).limit(LIST_LIMIT)
            return critical_result_records(session, statement)

        def audit(session: Session, results: tuple[CriticalResultRecord, ...]) -> None:
            record_query(
                session, origin, (r.patient.patient_id for r in results),
                f"open critical results: {len(results)}",
            )  # fmt: skip

        return audited_read(self._database, read, audit)

    def acknowledge(self, result_id: int, origin: Origin, note: str = "") -> CriticalResultRecord:
        """Record that the clinician received the critical result; audited."""
        if not origin.user:
            raise InvalidInput("a critical result is acknowledged by a signed-in user")
        note = (note or "").strip()
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")

        def work(session: Session) -> CriticalResultRecord:
            statement = _scoped(
                select(CriticalResult).where(CriticalResult.id == result_id), origin
            ).with_for_update()
            critical = session.scalars(statement).first()
            if critical is None:
                raise UnknownCriticalResultError(f"no critical result {result_id}")
            if critical.acknowledged_at is not None:
                when = aware_utc(critical.acknowledged_at).strftime("%Y-%m-%d %H:%M UTC")
                raise CriticalResultAcknowledgedError(
                    f"critical result {result_id} was acknowledged by {critical.acknowledged_by} "
                    f"on {when}"
                )
            critical.acknowledged_by = origin.user
            critical.acknowledged_at = utc_now()
            critical.acknowledgement_note = note or None
            session.flush()
            [result] = critical_result_records(
                session, select(CriticalResult).where(CriticalResult.id == result_id)
            )
            record(
                session,
                AuditRecord(
                    AuditEventId.PROCEDURE_RECORD, "U", origin,
                    patient_id=result.patient.patient_id,
                    detail=f"critical result {result_id} of {result.accession_number} acknowledged",
                ),
            )  # fmt: skip
            return result

        return self._database.transaction(work)
