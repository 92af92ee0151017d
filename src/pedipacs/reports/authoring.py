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
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    CriticalResult,
    ImagingOrder,
    Report,
    ReportVersion,
)
from pedipacs.errors import Conflict, InvalidInput
from pedipacs.jobs.queue import JobQueue
from pedipacs.model.origin import Origin
from pedipacs.model.reports import (
    ReportRecord,
    ReportStatus,
    VersionKind,
)
from pedipacs.model.ris import OrderStatus
from pedipacs.reports.claims import release_claim, take_claim
from pedipacs.reports.distribution import DistributionTargets, ReportDocument, enqueue_release
from pedipacs.reports.exams import (
    order_by_accession,
    order_studies,
    patient_of,
)
from pedipacs.reports.report_views import (
    UnknownReportError,
    audit_report_access,
    person_name,
    record_report_read,
    report_document,
    report_of,
    report_record,
)
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.templates import GENERAL, ReportTemplate
from pedipacs.security.audit import (
    AuditEventId,
    AuditOutcome,
    AuditRecord,
    audited_read,
    record,
)

MAX_ADDENDUM = 20_000
MAX_FINDING = 2_000
# Exams in these states have had images and may be reported.
REPORTABLE = frozenset(
    {OrderStatus.ARRIVED, OrderStatus.IN_PROGRESS, OrderStatus.COMPLETED, OrderStatus.DISCONTINUED}
)


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

        def read(session: Session) -> ReportRecord:
            order = order_by_accession(session, accession)
            patient = patient_of(session, order)
            if not origin.sees(patient.patient_id):
                raise UnknownReportError(f"no report for exam {accession}")
            report = report_of(session, order.id)
            if report is None or (not include_drafts and report.status == ReportStatus.DRAFT):
                raise UnknownReportError(f"exam {accession} has no report yet")
            return report_record(session, order, report, with_versions=True)

        def audit(session: Session, found: ReportRecord) -> None:
            study = found.study_instance_uids[0] if found.study_instance_uids else None
            detail = f"report of {accession} read"
            record_report_read(session, origin, found.patient.patient_id, study, detail)

        return audited_read(self._database, read, audit)

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
            report = report_of(session, order.id, for_update=True)
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
            audit_report_access(
                session, origin, order, "U", f"addendum to the report of {accession}"
            )
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
            report = report_of(session, order.id, for_update=True)
            template = self._template_for(session, report, draft, order)
            text = template.checked_text(draft.sections)
            if report is None:
                report = _new_report(session, order, template, text, user)
            else:
                _check_revision(session, report, draft.revision, order.accession_number)
            if kind is not VersionKind.DRAFT:
                missing = template.missing(text)
                if missing:
                    raise MissingReportSectionsError(
                        f"not signed: {', '.join(missing)} must be filled in first"
                    )
            take_claim(session, order, user, self._claim_duration)
            _write_version(session, report, text, kind, user)
            if kind is VersionKind.PRELIMINARY:
                report.preliminary_at, report.preliminary_by = report.updated_at, user
            elif kind is VersionKind.FINAL:
                report.signed_at, report.signed_by = report.updated_at, user
                report.signed_by_name = person_name(session, user)
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
            audit_report_access(
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
        # No template chosen: the general one (a modality serves many exams, so it cannot choose).
        return self._templates.get_in(session, draft.template_key or GENERAL)

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

        def read(session: Session) -> ReportDocument:
            order = order_by_accession(session, accession)
            if not origin.sees(patient_of(session, order).patient_id):
                raise UnknownReportError(f"no report for exam {accession}")
            report = report_of(session, order.id)
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
            return report_document(session, self._templates, report.id, newest)

        def audit(session: Session, found: ReportDocument) -> None:
            detail = f"report of {accession} read (document)"
            record_report_read(
                session, origin, found.patient.patient_id, found.study_instance_uid, detail
            )

        return audited_read(self._database, read, audit)

    def document(self, report_id: int, version: int) -> ReportDocument:
        """One released version of a report, as a message or a PDF shows it."""
        with self._database.reading() as session:
            return report_document(session, self._templates, report_id, version)


# -- session-level helpers (the caller's transaction) -------------------------------------------


def _check_reportable(session: Session, order: ImagingOrder) -> None:
    status = OrderStatus(order.status)
    if status is OrderStatus.REPORTED:
        report = report_of(session, order.id)
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


def _check_revision(session: Session, report: Report, revision: int | None, accession: str) -> None:
    if ReportStatus(report.status).is_signed:
        raise ReportAlreadySignedError(
            f"the report of {accession} was signed by {report.signed_by}; a signed report is not "
            "changed: add an addendum"
        )
    if revision is None or revision != report.revision:
        last_author = session.scalar(
            select(ReportVersion.author).where(
                ReportVersion.report_fk == report.id, ReportVersion.number == report.revision
            )
        )
        raise ReportChangedError(
            f"the report of {accession} changed since you opened it (now version "
            f"{report.revision}, last saved by {last_author}); reload it and try again"
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
    text: dict[str, str],
    kind: VersionKind,
    user: str,
) -> None:
    report.sections = json.dumps(text, sort_keys=True)
    report.revision += 1
    report.updated_at = utc_now()
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


def _flag_critical(
    session: Session, report: Report, order: ImagingOrder, finding: str, user: str
) -> None:
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
