"""Writing and signing reports on both databases: a draft from a template, preliminary then
final, every version kept, a signed report never changed again but followed by addenda, each
release enqueuing its distribution in the same transaction; bad requests refused with their
reason and nothing changed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from pedipacs.db.tables import AuditEvent, Job, Report, ReportVersion
from pedipacs.model.origin import Origin
from pedipacs.model.reports import ReportStatus, VersionKind
from pedipacs.model.ris import OrderStatus
from pedipacs.node import Node
from pedipacs.reports.authoring import (
    ExamNotReportableError,
    MissingReportSectionsError,
    ReportAlreadySignedError,
    ReportChangedError,
    ReportDraft,
    ReportNotSignedError,
    UnknownReportError,
)
from pedipacs.reports.claims import ClaimedByOtherError
from pedipacs.reports.distribution import ORU_JOB, REPORT_OBJECT_JOB
from pedipacs.reports.templates import UnknownTemplateError
from pedipacs.ris.orders import UnknownOrderError
from support.reporting import COLLEAGUE, FINDINGS_TEXT, HIS, RADIOLOGIST, exam
from support.worklist import us_abdomen

RECEIVER = "127.0.0.1:6661"


@pytest.fixture
def reporting(node: Node) -> Node:
    """The node, with one HL7 receiver for released reports."""
    from dataclasses import replace

    from pedipacs.reports.distribution import DistributionTargets

    node.reports._targets = replace(DistributionTargets(), hl7_receivers=(RECEIVER,))
    return node


def jobs(node: Node) -> list[tuple[str, dict[str, object]]]:
    with node.database.reading() as session:
        rows = session.execute(select(Job.kind, Job.payload).order_by(Job.id)).all()
    return [(kind, json.loads(payload)) for kind, payload in rows]


def count(node: Node, table: type) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_a_draft_starts_from_the_template_and_keeps_every_version(reporting: Node) -> None:
    accession = exam(reporting, 1)
    first = reporting.reports.save(
        accession, ReportDraft({"findings": "Appendix 9 mm."}, template_key="us-appendicitis"),
        RADIOLOGIST,
    )  # fmt: skip
    assert (first.status, first.revision, first.template_key) == (
        ReportStatus.DRAFT, 1, "us-appendicitis"
    )  # fmt: skip
    assert first.sections["findings"] == "Appendix 9 mm."
    second = reporting.reports.save(
        accession, ReportDraft({**FINDINGS_TEXT}, revision=1), RADIOLOGIST
    )
    assert second.revision == 2
    read = reporting.reports.get(accession, RADIOLOGIST)
    assert [v.kind for v in read.versions] == [VersionKind.DRAFT, VersionKind.DRAFT]
    assert read.versions[0].sections["findings"] == "Appendix 9 mm."
    assert jobs(reporting) == []  # drafts go nowhere


def test_signing_final_releases_the_report_and_moves_the_exam_to_reported(
    reporting: Node,
) -> None:
    accession = exam(reporting, 2)
    draft = reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST)
    signed = reporting.reports.sign(
        accession, ReportDraft(FINDINGS_TEXT, revision=draft.revision), RADIOLOGIST,
        is_final=True,
    )  # fmt: skip
    assert signed.status is ReportStatus.FINAL
    assert signed.signed_by == "dr.reed" and signed.signed_at is not None
    assert reporting.orders.get(accession).status is OrderStatus.REPORTED
    assert jobs(reporting) == [
        (ORU_JOB, {"receiver": RECEIVER, "report_id": signed.id, "version": 2}),
        (REPORT_OBJECT_JOB, {"report_id": signed.id, "version": 2}),
    ]
    assert reporting.reading.current_claim(accession) is None


def test_preliminary_then_final_each_sent_and_the_preliminary_text_kept(reporting: Node) -> None:
    accession = exam(reporting, 3)
    preliminary = reporting.reports.sign(
        accession, ReportDraft({**FINDINGS_TEXT, "impression": "Probable appendicitis."}),
        RADIOLOGIST, is_final=False,
    )  # fmt: skip
    assert preliminary.status is ReportStatus.PRELIMINARY
    assert preliminary.preliminary_by == "dr.reed"
    assert reporting.orders.get(accession).status is not OrderStatus.REPORTED
    final = reporting.reports.sign(
        accession, ReportDraft(FINDINGS_TEXT, revision=preliminary.revision), COLLEAGUE,
        is_final=True,
    )  # fmt: skip
    assert (final.status, final.signed_by, final.preliminary_by) == (
        ReportStatus.FINAL, "dr.osei", "dr.reed"
    )  # fmt: skip
    kinds = [kind for kind, _ in jobs(reporting)]
    # The preliminary goes to the HIS only; the final to the HIS and into the study.
    assert kinds == [ORU_JOB, ORU_JOB, REPORT_OBJECT_JOB]
    versions = reporting.reports.get(accession, RADIOLOGIST).versions
    assert versions[0].sections["impression"] == "Probable appendicitis."
    assert versions[1].sections["impression"] == "Acute appendicitis."


def test_a_signed_report_is_not_edited_or_signed_again_but_takes_addenda(reporting: Node) -> None:
    accession = exam(reporting, 4)
    signed = reporting.reports.sign(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST,
                                    is_final=True)  # fmt: skip
    before = count(reporting, ReportVersion), len(jobs(reporting))
    with pytest.raises(ReportAlreadySignedError, match=r"signed by dr\.reed.*addendum"):
        reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT, signed.revision), RADIOLOGIST)
    with pytest.raises(ReportAlreadySignedError):
        reporting.reports.sign(accession, ReportDraft(FINDINGS_TEXT, signed.revision),
                               RADIOLOGIST, is_final=True)  # fmt: skip
    assert (count(reporting, ReportVersion), len(jobs(reporting))) == before
    amended = reporting.reports.add_addendum(
        accession, "Small amount of free fluid in the pelvis.", COLLEAGUE
    )
    assert amended.status is ReportStatus.AMENDED
    assert amended.sections == signed.sections  # the signed text itself never changes
    assert [(a.text, a.author) for a in amended.addenda] == [
        ("Small amount of free fluid in the pelvis.", "dr.osei")
    ]
    assert [kind for kind, _ in jobs(reporting)][-2:] == [ORU_JOB, REPORT_OBJECT_JOB]
    document = reporting.reports.document(amended.id, amended.revision)
    assert document.is_correction and document.addenda[0][0].startswith("Small amount")


def test_signing_needs_the_required_sections_and_changes_nothing_when_refused(
    reporting: Node,
) -> None:
    accession = exam(reporting, 5)
    draft = reporting.reports.save(
        accession, ReportDraft({"clinical_information": "Fever"}), RADIOLOGIST
    )
    with pytest.raises(MissingReportSectionsError, match="Findings, Impression"):
        reporting.reports.sign(
            accession, ReportDraft({"clinical_information": "Fever", "findings": "  "},
                                   revision=draft.revision),
            RADIOLOGIST, is_final=True,
        )  # fmt: skip
    report = reporting.reports.get(accession, RADIOLOGIST)
    assert (report.status, report.revision) == (ReportStatus.DRAFT, 1)
    assert jobs(reporting) == []


def test_refusals_name_their_reason(reporting: Node) -> None:
    accession = exam(reporting, 6)
    with pytest.raises(UnknownOrderError, match="NOPE"):
        reporting.reports.save("NOPE", ReportDraft(FINDINGS_TEXT), RADIOLOGIST)
    with pytest.raises(UnknownTemplateError):
        reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT, template_key="x"), RADIOLOGIST)
    with pytest.raises(ReportNotSignedError):
        reporting.reports.add_addendum(accession, "text", RADIOLOGIST)
    with pytest.raises(UnknownReportError):
        reporting.reports.get(accession, RADIOLOGIST)
    # An order whose images have not arrived yet.
    from support.reporting import child

    waiting = child(99)
    reporting.patients.register(waiting, HIS)
    reporting.orders.place(us_abdomen(waiting.primary, "E6099"), HIS)
    with pytest.raises(ExamNotReportableError, match="no images"):
        reporting.reports.save("E6099", ReportDraft(FINDINGS_TEXT), RADIOLOGIST)
    assert count(reporting, Report) == 0


def test_two_people_cannot_overwrite_each_other(reporting: Node) -> None:
    accession = exam(reporting, 7)
    reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST)
    with pytest.raises(ClaimedByOtherError, match=r"being read by dr\.reed"):
        reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT, revision=1), COLLEAGUE)
    reporting.reading.release(accession, RADIOLOGIST)
    reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT, revision=1), COLLEAGUE)
    with pytest.raises(ReportChangedError, match=r"changed since you opened it.*saved by dr\.osei"):
        reporting.reports.save(accession, ReportDraft(FINDINGS_TEXT, revision=1), COLLEAGUE)


def test_a_critical_finding_waits_for_acknowledgement(reporting: Node) -> None:
    accession = exam(reporting, 8)
    signed = reporting.reports.sign(
        accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=True,
        critical_finding="Perforated appendicitis with abscess",
    )  # fmt: skip
    assert signed.is_critical
    [open_result] = reporting.critical_results.open_results(RADIOLOGIST)
    assert (open_result.accession_number, open_result.finding) == (
        accession, "Perforated appendicitis with abscess"
    )  # fmt: skip
    clinician = Origin.http("dr.okafor", "10.0.0.20")
    done = reporting.critical_results.acknowledge(open_result.id, clinician, "called the family")
    assert (done.acknowledged_by, done.acknowledgement_note) == ("dr.okafor", "called the family")
    assert reporting.critical_results.open_results(RADIOLOGIST) == ()
    document = reporting.reports.document(signed.id, signed.revision)
    assert document.critical_finding == "Perforated appendicitis with abscess"


def test_writing_and_reading_reports_is_audited(reporting: Node) -> None:
    accession = exam(reporting, 9)
    reporting.reports.sign(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=True)
    reporting.reports.get(accession, Origin.http("dr.okafor", "10.0.0.20"), include_drafts=False)
    with reporting.database.reading() as session:
        rows = session.execute(
            select(AuditEvent.event_action, AuditEvent.user, AuditEvent.patient_id)
            .where(AuditEvent.event_id == "110111")
            .order_by(AuditEvent.sequence)
        ).all()
    assert [tuple(row) for row in rows][-2:] == [
        ("C", "dr.reed", "MRN6009"),
        ("R", "dr.okafor", "MRN6009"),
    ]
