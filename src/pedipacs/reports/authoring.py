"""Writing and signing reports.

A report belongs to one exam (order, by accession number) and goes draft -> preliminary ->
final -> amended. Every save leaves a version; a final report's text is never changed again,
only followed by addenda. Each change names the revision it was made on, so two people cannot
overwrite each other unseen, and whoever writes holds the exam's reading claim.

Releasing a version (preliminary, final, addendum) enqueues its distribution in the same
transaction (`reports/distribution.py`); signing the final report moves the exam to
`reported`, releases the claim and, with a critical finding, opens a critical result that waits
for the referring clinician's acknowledgement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    CriticalResult,
    ImagingOrder,
    Report,
    ReportVersion,
    RequestedProcedure,
    UserAccount,
)
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.jobs.queue import JobQueue
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
from pedipacs.reports.claims import release_claim, take_claim
from pedipacs.reports.critical import critical_result_records
from pedipacs.reports.distribution import DistributionTargets, ReportDocument, enqueue_release
from pedipacs.reports.exams import (
    modalities_of,
    order_by_accession,
    order_studies,
    patient_line,
    patient_of,
    procedure_description,
)
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.templates import ReportTemplate
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record

MAX_ADDENDUM = 20_000
MAX_FINDING = 2_000
# Exams in these states have had images and may be reported.
REPORTABLE = frozenset(
    {OrderStatus.ARRIVED, OrderStatus.IN_PROGRESS, OrderStatus.COMPLETED, OrderStatus.DISCONTINUED}
)


class UnknownReportError(NotFound):
    """The exam has no report yet."""


class ExamNotReportableError(Conflict):
    """The exam cannot be reported: cancelled, or no images have arrived for it."""


class ReportAlreadySignedError(Conflict):
    """A signed (final) report is never edited or signed again; an addendum follows it."""


class ReportNotSignedError(Conflict):
    """An addendum follows a final report only."""


class ReportChangedError(Conflict):
    """The report changed since the revision the change was made on."""


class MissingReportSectionsError(InvalidInput):
    """Signing needs every required section of the template filled."""


@dataclass(frozen=True, slots=True)
class ReportDraft:
    """A change to a report's text, made on `revision` (None: the report is new)."""

    sections: dict[str, str]
    revision: int | None = None
    template_key: str | None = None


class ReportService:
    def __init__(
        self,
        database: Database,
        templates: ReportTemplateService,
        jobs: JobQueue,
        *,
        targets: DistributionTargets | None = None,
        claim_duration: timedelta = timedelta(minutes=30),
    ) -> None:
        self._database = database
        self._templates = templates
        self._jobs = jobs
        self._targets = targets or DistributionTargets()
        self._claim_duration = claim_duration

    # -- reading ----------------------------------------------------------------------------

    def get(self, accession: str, origin: Origin, *, include_drafts: bool = True) -> ReportRecord:
        """The exam's report, with its versions; audited. Without `include_drafts` (a clinician)
        a draft is as good as no report."""

        def work(session: Session) -> ReportRecord:
            order = order_by_accession(session, accession)
            patient = patient_of(session, order)
            if not origin.sees(patient.patient_id):
                raise UnknownReportError(f"no report for exam {accession}")
            report = _report_of(session, order.id)
            if report is None or (not include_drafts and report.status == ReportStatus.DRAFT):
                raise UnknownReportError(f"exam {accession} has no report yet")
            _audit(session, origin, order, "R", f"report of {order.accession_number} read")
            return report_record(session, order, report, with_versions=True)

        return self._database.transaction(work)

    # -- writing ----------------------------------------------------------------------------

    def save(self, accession: str, draft: ReportDraft, origin: Origin) -> ReportRecord:
        """Save the text as a draft (a preliminary report stays preliminary until signed
        again). Creates the report on the first save."""
        return self._change(accession, draft, origin, VersionKind.DRAFT, None)

    def sign(
        self,
        accession: str,
        draft: ReportDraft,
        origin: Origin,
        *,
        is_final: bool,
        critical_finding: str | None = None,
    ) -> ReportRecord:
        """Sign the text as preliminary or final: every required section filled, released to
        clinicians and sent on. A final signature is the last change of the text."""
        kind = VersionKind.FINAL if is_final else VersionKind.PRELIMINARY
        return self._change(accession, draft, origin, kind, _finding(critical_finding))

    def add_addendum(
        self,
        accession: str,
        text: str,
        origin: Origin,
        *,
        critical_finding: str | None = None,
    ) -> ReportRecord:
        """Follow a final report with an addendum: the report becomes amended, and is sent on
        again with the addendum."""
        text = (text or "").replace("\r\n", "\n").strip()
        if not text:
            raise InvalidInput("the addendum is empty")
        if len(text) > MAX_ADDENDUM:
            raise InvalidInput(f"the addendum is longer than {MAX_ADDENDUM} characters")
        finding = _finding(critical_finding)
        user = _user(origin)

        def work(session: Session) -> ReportRecord:
            order = order_by_accession(session, accession, for_update=True)
            report = _report_of(session, order.id, for_update=True)
            if report is None or not ReportStatus(report.status).is_signed:
                raise ReportNotSignedError(
                    f"exam {order.accession_number} has no final report yet: an addendum follows "
                    "a signed report (edit and sign the report itself until then)"
                )
            report.status = ReportStatus.AMENDED
            report.revision += 1
            report.updated_at = utc_now()
            session.add(
                ReportVersion(
                    report_fk=report.id,
                    number=report.revision,
                    kind=VersionKind.ADDENDUM,
                    sections=report.sections,
                    addendum=text,
                    author=user,
                    created_at=report.updated_at,
                )
            )
            if finding is not None:
                _flag_critical(session, report, order, finding, user)
            session.flush()
            enqueue_release(
                session,
                self._jobs,
                self._targets,
                report_id=report.id,
                version=report.revision,
                kind=VersionKind.ADDENDUM,
            )
            _audit(session, origin, order, "U", f"addendum to the report of {accession}")
            return report_record(session, order, report)

        return self._database.transaction(work)

    def _change(
        self,
        accession: str,
        draft: ReportDraft,
        origin: Origin,
        kind: VersionKind,
        critical_finding: str | None,
    ) -> ReportRecord:
        user = _user(origin)

        def work(session: Session) -> ReportRecord:
            order = order_by_accession(session, accession, for_update=True)
            _check_reportable(session, order)
            report = _report_of(session, order.id, for_update=True)
            template = self._template_for(session, report, draft, order)
            text = template.checked_text(draft.sections)
            if report is None:
                report = _new_report(session, order, template, text, user)
            else:
                _check_revision(report, draft.revision, order.accession_number)
            if kind is not VersionKind.DRAFT:
                missing = template.missing(text)
                if missing:
                    raise MissingReportSectionsError(
                        f"not signed: {', '.join(missing)} must be filled in first"
                    )
            take_claim(session, order, user, self._claim_duration)
            _write_version(session, report, template, text, kind, user)
            if kind is VersionKind.PRELIMINARY:
                report.preliminary_at, report.preliminary_by = report.updated_at, user
            elif kind is VersionKind.FINAL:
                report.signed_at, report.signed_by = report.updated_at, user
                report.signed_by_name = _person_name(session, user)
                order.status = OrderStatus.REPORTED
            if kind is not VersionKind.DRAFT:
                # Signed: back to the worklist (a preliminary read waits for its final one).
                release_claim(session, order.id)
            if critical_finding is not None:
                _flag_critical(session, report, order, critical_finding, user)
            session.flush()
            if kind is not VersionKind.DRAFT:
                enqueue_release(
                    session,
                    self._jobs,
                    self._targets,
                    report_id=report.id,
                    version=report.revision,
                    kind=kind,
                )
            _audit(
                session,
                origin,
                order,
                "C" if report.revision == 1 else "U",
                f"report of {order.accession_number}: {kind} (version {report.revision})",
            )
            return report_record(session, order, report)

        return self._database.transaction(work)

    def _template_for(
        self, session: Session, report: Report | None, draft: ReportDraft, order: ImagingOrder
    ) -> ReportTemplate:
        if report is not None:
            if draft.template_key and draft.template_key != report.template_key:
                raise InvalidInput(
                    f"the report of {order.accession_number} is written with template "
                    f"{report.template_key}; its template cannot change"
                )
            return self._templates.get_in(session, report.template_key)
        if draft.template_key:
            return self._templates.get_in(session, draft.template_key)
        modalities = modalities_of(order_studies(session, order.id))
        return self._templates.suggested_in(session, modalities)

    # -- distribution -------------------------------------------------------------------------

    def record_sent(
        self,
        document: ReportDocument,
        destination: str,
        origin: Origin,
        *,
        is_refused: bool = False,
    ) -> None:
        """Put a report sent out of pedipacs on the audit trail (110106 Export)."""
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    AuditEventId.EXPORT,
                    "R",
                    origin,
                    outcome=AuditOutcome.MINOR_FAILURE if is_refused else AuditOutcome.SUCCESS,
                    patient_id=document.patient.patient_id,
                    study_instance_uid=document.study_instance_uid,
                    detail=f"report of {document.accession_number} version {document.version} "
                    f"({document.status}) {'refused by' if is_refused else 'sent to'} "
                    f"{destination}",
                ),
            )

    def released_document(self, accession: str, origin: Origin) -> ReportDocument:
        """The newest released version of the exam's report (what a PDF shows); audited."""

        def work(session: Session) -> ReportDocument:
            order = order_by_accession(session, accession)
            if not origin.sees(patient_of(session, order).patient_id):
                raise UnknownReportError(f"no report for exam {accession}")
            report = _report_of(session, order.id)
            newest = None
            if report is not None:
                newest = session.scalar(
                    select(func.max(ReportVersion.number)).where(
                        ReportVersion.report_fk == report.id,
                        ReportVersion.kind != VersionKind.DRAFT,
                    )
                )
            if report is None or newest is None:
                raise UnknownReportError(f"exam {accession} has no released report yet")
            _audit(session, origin, order, "R", f"report of {accession} read (document)")
            return report_document(session, self._templates, report.id, newest)

        return self._database.transaction(work)

    def document(self, report_id: int, version: int) -> ReportDocument:
        """One released version of a report, as a message or a PDF shows it."""
        with self._database.reading() as session:
            return report_document(session, self._templates, report_id, version)


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
        signed_by_name=report.signed_by_name if signed else _person_name(session, this.author),
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


# -- session-level helpers (the caller's transaction) -------------------------------------------


def _report_of(session: Session, order_id: int, *, for_update: bool = False) -> Report | None:
    statement = select(Report).where(Report.order_fk == order_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).first()


def _check_reportable(session: Session, order: ImagingOrder) -> None:
    status = OrderStatus(order.status)
    if status is OrderStatus.REPORTED:
        report = _report_of(session, order.id)
        if report is not None and report.signed_at is not None:
            raise ReportAlreadySignedError(_signed_message(order, report))
        return
    if status is OrderStatus.CANCELLED:
        raise ExamNotReportableError(f"exam {order.accession_number} was cancelled")
    if status not in REPORTABLE or not order_studies(session, order.id):
        raise ExamNotReportableError(
            f"no images have arrived for exam {order.accession_number} yet"
        )


def _signed_message(order: ImagingOrder, report: Report) -> str:
    when = aware_utc(report.signed_at).strftime("%Y-%m-%d %H:%M UTC") if report.signed_at else ""
    return (
        f"the report of {order.accession_number} was signed by {report.signed_by} on {when}; "
        "a signed report is not changed: add an addendum"
    )


def _check_revision(report: Report, revision: int | None, accession: str) -> None:
    if ReportStatus(report.status).is_signed:
        raise ReportAlreadySignedError(
            f"the report of {accession} was signed by {report.signed_by}; a signed report is not "
            "changed: add an addendum"
        )
    if revision is None or revision != report.revision:
        raise ReportChangedError(
            f"the report of {accession} changed since you opened it (now version "
            f"{report.revision}, last saved by {_last_author(report)}); reload it and try again"
        )


def _last_author(report: Report) -> str:
    return (
        report.preliminary_by
        if report.status == ReportStatus.PRELIMINARY and report.preliminary_by
        else report.author
    )


def _new_report(
    session: Session, order: ImagingOrder, template: ReportTemplate, text: dict[str, str], user: str
) -> Report:
    now = utc_now()
    report = Report(
        order_fk=order.id,
        status=ReportStatus.DRAFT,
        template_key=template.key,
        sections=json.dumps(text, sort_keys=True),
        is_critical=False,
        revision=0,
        author=user,
        created_at=now,
        updated_at=now,
    )
    session.add(report)
    session.flush()
    return report


def _write_version(
    session: Session,
    report: Report,
    template: ReportTemplate,
    text: dict[str, str],
    kind: VersionKind,
    user: str,
) -> None:
    report.sections = json.dumps(text, sort_keys=True)
    report.revision += 1
    report.updated_at = utc_now()
    report.author = report.author or user
    if kind is VersionKind.PRELIMINARY:
        report.status = ReportStatus.PRELIMINARY
    elif kind is VersionKind.FINAL:
        report.status = ReportStatus.FINAL
    session.add(
        ReportVersion(
            report_fk=report.id,
            number=report.revision,
            kind=kind,
            sections=report.sections,
            author=user,
            created_at=report.updated_at,
        )
    )
    del template  # the text was checked against it by the caller


def _flag_critical(
    session: Session, report: Report, order: ImagingOrder, finding: str, user: str
) -> None:
    report.is_critical = True
    session.add(
        CriticalResult(
            report_fk=report.id,
            order_fk=order.id,
            finding=finding,
            flagged_by=user,
            flagged_at=report.updated_at,
        )
    )


def _finding(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    finding = text.strip()
    if len(finding) > MAX_FINDING:
        raise InvalidInput(f"the critical finding is longer than {MAX_FINDING} characters")
    return finding


def _user(origin: Origin) -> str:
    if not origin.user:
        raise InvalidInput("reports are written by a signed-in user")
    return origin.user


def _person_name(session: Session, username: str) -> str | None:
    """The signer's name as a DICOM PN (`Family^Given`) from their account's display name."""
    display = session.scalars(
        select(UserAccount.display_name).where(UserAccount.username == username)
    ).first()
    if not display:
        return None
    words = display.split()
    return f"{words[-1]}^{' '.join(words[:-1])}" if len(words) > 1 else words[0]


def _audit(session: Session, origin: Origin, order: ImagingOrder, action: str, detail: str) -> None:
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
