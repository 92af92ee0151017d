"""A child's imaging timeline, for the clinicians who care for them: every exam (the orders and
the studies that came without one), newest first, each with its status, its released report
(preliminary, final or amended; drafts stay with the radiologists) and its critical results.

Only the patients the asker may see are found (a referring clinician's own, plus those opened
by breaking the glass); every search and every timeline shown is on the audit trail.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc
from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    CriticalResult,
    ImagingOrder,
    Patient,
    PatientIdentifier,
    Report,
    Study,
)
from pedipacs.errors import InvalidInput, NotFound
from pedipacs.model.origin import Origin
from pedipacs.model.reports import PatientLine, PatientTimeline, ReportStatus, TimelineExam
from pedipacs.model.ris import OrderStatus, Priority
from pedipacs.reports.critical import critical_result_records
from pedipacs.reports.exams import modalities_of, patient_line, procedure_description
from pedipacs.reports.report_views import report_record
from pedipacs.ris.order_views import patient_matches
from pedipacs.security.audit import (
    AuditEventId,
    AuditRecord,
    audited_read,
    record,
    record_query,
)

MAX_RESULTS = 100


class UnknownPatientTimelineError(NotFound):
    """No patient has that identifier (or the asker may not see them)."""


@dataclass(frozen=True, slots=True)
class PatientMatch:
    patient: PatientLine
    is_temporary: bool
    number_of_studies: int
    last_exam: date | None


def _visible(origin: Origin) -> ColumnElement[bool]:
    """Patients not merged into another, and among the asker's when they have a scope."""
    current = Patient.merged_into_fk.is_(None)
    if origin.patient_scope is None:
        return current
    return and_(current, Patient.patient_id.in_(sorted(origin.patient_scope)))


class PatientTimelineService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def search(self, text: str, origin: Origin, *, limit: int = 50) -> list[PatientMatch]:
        """Patients by an identifier or the start of a name part; audited as a query."""
        text = (text or "").strip()
        if not text:
            raise InvalidInput("type a patient ID or the start of a name")
        limit = max(1, min(limit, MAX_RESULTS))

        def read(session: Session) -> list[PatientMatch]:
            last_exam = (
                select(func.max(Study.study_date))
                .where(Study.patient_fk == Patient.id)
                .scalar_subquery()
            )
            rows = session.execute(
                select(Patient, last_exam)
                .where(patient_matches(text), _visible(origin))
                .order_by(Patient.patient_name_search, Patient.id)
                .limit(limit)
            ).all()
            return [
                PatientMatch(
                    patient_line(patient),
                    patient.is_temporary,
                    patient.number_of_patient_related_studies,
                    last,
                )
                for patient, last in rows
            ]

        def audit(session: Session, matches: list[PatientMatch]) -> None:
            record_query(
                session, origin, (m.patient.patient_id for m in matches),
                f"patient search {text!r}: {len(matches)} found",
            )  # fmt: skip

        return audited_read(self._database, read, audit)

    def timeline(self, patient_id: str, origin: Origin, *, issuer: str = "") -> PatientTimeline:
        """The child's exams, newest first; audited (110110 read of the patient record)."""
        patient_id = patient_id.strip()

        def read(session: Session) -> PatientTimeline:
            patient = session.scalars(
                select(Patient).where(
                    Patient.patient_id == patient_id,
                    Patient.issuer_of_patient_id == issuer,
                    _visible(origin),
                )
            ).first()
            if patient is None:
                raise UnknownPatientTimelineError(f"no patient {patient_id!r} that you may see")
            exams = _exams(session, patient)
            open_critical = critical_result_records(
                session,
                select(CriticalResult).where(
                    CriticalResult.acknowledged_at.is_(None),
                    CriticalResult.order_fk.in_(
                        select(ImagingOrder.id).where(ImagingOrder.patient_fk == patient.id)
                    ),
                ),
            )
            others = session.scalars(
                select(PatientIdentifier)
                .where(PatientIdentifier.patient_fk == patient.id)
                .order_by(PatientIdentifier.id)
            ).all()
            return PatientTimeline(
                patient=patient_line(patient),
                other_identifiers=tuple(
                    f"{o.identifier} ({o.issuer})" if o.issuer else o.identifier
                    for o in others
                    if (o.identifier, o.issuer)
                    != (patient.patient_id, patient.issuer_of_patient_id)
                ),
                exams=tuple(exams),
                open_critical_results=open_critical,
            )

        def audit(session: Session, timeline: PatientTimeline) -> None:
            record(
                session,
                AuditRecord(
                    AuditEventId.PATIENT_RECORD, "R", origin,
                    patient_id=timeline.patient.patient_id,
                    detail=f"imaging timeline: {len(timeline.exams)} exam(s)",
                ),
            )  # fmt: skip

        return audited_read(self._database, read, audit)


def _exams(session: Session, patient: Patient) -> list[TimelineExam]:
    orders = session.scalars(
        select(ImagingOrder).where(
            ImagingOrder.patient_fk == patient.id, ImagingOrder.status != OrderStatus.CANCELLED
        )
    ).all()
    studies = session.scalars(select(Study).where(Study.patient_fk == patient.id)).all()
    by_order: dict[int, list[Study]] = defaultdict(list)
    # Studies of this child attached to an order (even one placed under another identity
    # before a merge), and those that came without one.
    for study in studies:
        by_order[study.order_fk or 0].append(study)
    reports = {
        report.order_fk: report
        for report in session.scalars(
            select(Report).where(
                Report.order_fk.in_([o.id for o in orders]),
                Report.status != ReportStatus.DRAFT,
            )
        )
    }
    exams = []
    for order in orders:
        own = by_order.pop(order.id, [])
        report = reports.get(order.id)
        exams.append(
            TimelineExam(
                accession_number=order.accession_number,
                status=OrderStatus(order.status),
                priority=Priority(order.priority),
                procedure=procedure_description(session, order.id),
                reason=order.reason,
                exam_date=min((s.study_date for s in own if s.study_date), default=None)
                or (order.ordered_at or order.created_at).date(),
                ordered_at=aware_utc(order.ordered_at) if order.ordered_at else None,
                modalities=modalities_of(own),
                study_instance_uids=tuple(s.study_instance_uid for s in own),
                number_of_instances=sum(s.number_of_study_related_instances for s in own),
                report=report_record(session, order, report) if report is not None else None,
            )
        )
    for own in by_order.values():
        for study in own:  # without an order here (or under an order of another patient)
            exams.append(
                TimelineExam(
                    accession_number=study.accession_number,
                    status=None,
                    priority=None,
                    procedure=study.study_description,
                    reason=None,
                    exam_date=study.study_date,
                    ordered_at=None,
                    modalities=modalities_of([study]),
                    study_instance_uids=(study.study_instance_uid,),
                    number_of_instances=study.number_of_study_related_instances,
                    report=None,
                )
            )
    exams.sort(key=lambda exam: exam.exam_date or date.min, reverse=True)
    return exams
