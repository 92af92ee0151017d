"""Reports as they are read: a report row as the record services return, one released version
as a document (what an ORU^R01, a PDF or FHIR shows), and the audit record of an access.
Functions taking a `Session` work in the caller's transaction."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc
from pedipacs.db.tables import (
    CriticalResult,
    ImagingOrder,
    Report,
    ReportVersion,
    RequestedProcedure,
    UserAccount,
)
from pedipacs.errors import NotFound
from pedipacs.model.origin import Origin
from pedipacs.model.reports import (
    Addendum,
    CriticalResultRecord,
    ReportRecord,
    ReportStatus,
    ReportVersionRecord,
    VersionKind,
)
from pedipacs.model.ris import OrderStatus, Priority
from pedipacs.reports.critical import critical_result_records
from pedipacs.reports.distribution import ReportDocument
from pedipacs.reports.exams import (
    modalities_of,
    order_studies,
    patient_line,
    patient_of,
    procedure_description,
)
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.security.audit import AuditEventId, AuditRecord, record


class UnknownReportError(NotFound):
    """The exam has no report yet."""


def report_document(
    session: Session, templates: ReportTemplateService, report_id: int, version: int
) -> ReportDocument:
    report = session.get(Report, report_id)
    if report is None:
        raise UnknownReportError(f"no report {report_id}")
    rows = session.scalars(
        select(ReportVersion)
        .where(ReportVersion.report_fk == report_id, ReportVersion.number <= version)
        .order_by(ReportVersion.number)
    ).all()
    if not rows or rows[-1].number != version:
        raise UnknownReportError(f"report {report_id} has no version {version}")
    this = rows[-1]
    kind = VersionKind(this.kind)
    order = session.get(ImagingOrder, report.order_fk)
    assert order is not None
    studies = order_studies(session, order.id)
    template = templates.get_in(session, report.template_key)
    sections = json.loads(this.sections)
    addenda = tuple(
        (row.addendum or "", row.author, aware_utc(row.created_at))
        for row in rows
        if row.kind == VersionKind.ADDENDUM
    )
    critical = session.scalars(
        select(CriticalResult.finding)
        .where(CriticalResult.report_fk == report_id, CriticalResult.flagged_at <= this.created_at)
        .order_by(CriticalResult.id)
    ).all()
    signed = kind in (VersionKind.FINAL, VersionKind.ADDENDUM)
    return ReportDocument(
        report_id=report_id,
        version=version,
        kind=kind,
        status=_status_at(kind),
        accession_number=order.accession_number,
        placer_order_number=order.placer_order_number,
        filler_order_number=order.filler_order_number,
        patient=patient_line(patient_of(session, order)),
        patient_class=order.patient_class,
        referring_physician=order.referring_physician_name,
        procedure=procedure_description(session, order.id),
        procedure_code=_procedure_code(session, order.id),
        reason=order.reason,
        study_instance_uid=studies[0].study_instance_uid
        if studies
        else _planned_uid(session, order),
        modalities=modalities_of(studies),
        sections=tuple(
            (s.title, sections.get(s.key, ""))
            for s in template.sections
            if sections.get(s.key, "").strip()
        ),
        addenda=addenda,
        critical_finding="; ".join(critical) or None,
        author=report.author,
        signed_by=report.signed_by if signed else this.author,
        signed_by_name=report.signed_by_name if signed else person_name(session, this.author),
        observed_at=aware_utc(this.created_at),
        ordered_at=aware_utc(order.ordered_at) if order.ordered_at else None,
        study_date=studies[0].study_date if studies else None,
        study_time=studies[0].study_time if studies else None,
    )


def _status_at(kind: VersionKind) -> ReportStatus:
    return {
        VersionKind.DRAFT: ReportStatus.DRAFT,
        VersionKind.PRELIMINARY: ReportStatus.PRELIMINARY,
        VersionKind.FINAL: ReportStatus.FINAL,
        VersionKind.ADDENDUM: ReportStatus.AMENDED,
    }[kind]


def _procedure_code(session: Session, order_id: int) -> str | None:
    row = session.scalars(
        select(RequestedProcedure)
        .where(RequestedProcedure.order_fk == order_id)
        .order_by(RequestedProcedure.id)
    ).first()
    return row.code_value if row is not None else None


def _planned_uid(session: Session, order: ImagingOrder) -> str | None:
    return session.scalars(
        select(RequestedProcedure.study_instance_uid)
        .where(RequestedProcedure.order_fk == order.id)
        .order_by(RequestedProcedure.id)
    ).first()


def report_of(session: Session, order_id: int, *, for_update: bool = False) -> Report | None:
    statement = select(Report).where(Report.order_fk == order_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).first()


def person_name(session: Session, username: str) -> str | None:
    """The signer's name as a DICOM PN (`Family^Given`) from their account's display name."""
    display = session.scalars(
        select(UserAccount.display_name).where(UserAccount.username == username)
    ).first()
    if not display:
        return None
    words = display.split()
    return f"{words[-1]}^{' '.join(words[:-1])}" if len(words) > 1 else words[0]


def record_report_read(
    session: Session,
    origin: Origin,
    patient_id: str,
    study_instance_uid: str | None,
    detail: str,
) -> None:
    """A report read, on the audit trail (110111 Procedure Record, R)."""
    record(
        session,
        AuditRecord(
            AuditEventId.PROCEDURE_RECORD,
            "R",
            origin,
            patient_id=patient_id,
            study_instance_uid=study_instance_uid,
            detail=detail,
        ),
    )


def audit_report_access(
    session: Session, origin: Origin, order: ImagingOrder, action: str, detail: str
) -> None:
    """A report written (C, U), on the audit trail (110111 Procedure Record)."""
    patient = patient_of(session, order)
    studies = order_studies(session, order.id)
    record(
        session,
        AuditRecord(
            AuditEventId.PROCEDURE_RECORD,
            action,
            origin,
            patient_id=patient.patient_id,
            study_instance_uid=studies[0].study_instance_uid if studies else None,
            detail=detail,
        ),
    )


def report_record(
    session: Session, order: ImagingOrder, report: Report, *, with_versions: bool = False
) -> ReportRecord:
    """A report row as the record services return (the caller checked who may see it)."""
    studies = order_studies(session, order.id)
    versions = session.scalars(
        select(ReportVersion)
        .where(ReportVersion.report_fk == report.id)
        .order_by(ReportVersion.number)
    ).all()
    return ReportRecord(
        id=report.id,
        accession_number=order.accession_number,
        study_instance_uids=tuple(study.study_instance_uid for study in studies),
        patient=patient_line(patient_of(session, order)),
        order_status=OrderStatus(order.status),
        priority=Priority(order.priority),
        procedure=procedure_description(session, order.id),
        reason=order.reason,
        referring_physician=order.referring_physician_name,
        status=ReportStatus(report.status),
        template_key=report.template_key,
        sections=json.loads(report.sections),
        revision=report.revision,
        author=report.author,
        created_at=aware_utc(report.created_at),
        updated_at=aware_utc(report.updated_at),
        preliminary_at=_moment(report.preliminary_at),
        preliminary_by=report.preliminary_by,
        signed_at=_moment(report.signed_at),
        signed_by=report.signed_by,
        signed_by_name=report.signed_by_name,
        addenda=tuple(
            Addendum(v.addendum or "", v.author, aware_utc(v.created_at))
            for v in versions
            if v.kind == VersionKind.ADDENDUM
        ),
        critical_results=critical_records(session, report.id),
        versions=tuple(
            ReportVersionRecord(
                v.number,
                VersionKind(v.kind),
                json.loads(v.sections),
                v.addendum,
                v.author,
                aware_utc(v.created_at),
            )
            for v in versions
        )
        if with_versions
        else (),
    )


def critical_records(session: Session, report_id: int) -> tuple[CriticalResultRecord, ...]:
    return critical_result_records(
        session, select(CriticalResult).where(CriticalResult.report_fk == report_id)
    )


def _moment(value: datetime | None) -> datetime | None:
    return aware_utc(value) if value is not None else None
