"""A child's imaging timeline on both databases: every exam newest first with its released
report (never a draft), open critical results; patients found by identifier or name, only those
the asker may see; every look audited."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, update

from pedipacs.db.tables import AuditEvent, Study
from pedipacs.model.origin import Door, Origin
from pedipacs.model.reports import ReportStatus
from pedipacs.node import Node
from pedipacs.reports.authoring import ReportDraft
from pedipacs.reports.timeline import UnknownPatientTimelineError
from support.reporting import FINDINGS_TEXT, RADIOLOGIST, child, exam

CLINICIAN = Origin(Door.HTTP, user="dr.okafor", patient_scope=frozenset({"MRN6001"}))


@pytest.fixture
def history(node: Node) -> dict[str, str]:
    """One child with three exams (one signed with a critical finding, one preliminary, one
    draft) and another child."""
    patient = child(1, name="LEFEVRE^CLEMENCE", birth_date=date(2026, 11, 20))
    exams = {
        "signed": exam(node, 1, patient=patient),
        "preliminary": exam(node, 2, patient=patient, modality="CR", body_part="CHEST"),
        "draft": exam(node, 3, patient=patient),
        "other child": exam(node, 4),
    }
    node.reports.sign(exams["signed"], ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=True,
                      critical_finding="Pneumoperitoneum")  # fmt: skip
    node.reports.sign(exams["preliminary"], ReportDraft(FINDINGS_TEXT), RADIOLOGIST,
                      is_final=False)  # fmt: skip
    node.reports.save(exams["draft"], ReportDraft(FINDINGS_TEXT), RADIOLOGIST)
    with node.database.unit_of_work() as session:  # exam dates: the signed one oldest
        for number, day in ((1, 1), (2, 3), (3, 2)):
            session.execute(
                update(Study)
                .where(Study.study_instance_uid == f"1.2.826.0.1.3680043.10.6.{number}")
                .values(study_date=date(2026, 11, 20 + day))
            )
    return exams


def test_the_timeline_shows_released_reports_newest_exam_first(
    node: Node, history: dict[str, str]
) -> None:
    timeline = node.timelines.timeline("MRN6001", CLINICIAN, issuer="CHILDRENS")
    assert timeline.patient.name == "LEFEVRE^CLEMENCE"
    assert [e.accession_number for e in timeline.exams] == [
        history["preliminary"], history["draft"], history["signed"]
    ]  # fmt: skip
    reports = {e.accession_number: e.report for e in timeline.exams}
    assert reports[history["draft"]] is None  # drafts stay with the radiologists
    assert reports[history["preliminary"]].status is ReportStatus.PRELIMINARY  # type: ignore[union-attr]
    signed = reports[history["signed"]]
    assert signed is not None and signed.sections["impression"] == "Acute appendicitis."
    [critical] = timeline.open_critical_results
    assert critical.finding == "Pneumoperitoneum"
    assert timeline.exams[0].modalities == ("CR",)


def test_patients_are_found_by_identifier_or_name_within_the_askers_scope(
    node: Node, history: dict[str, str]
) -> None:
    assert [m.patient.patient_id for m in node.timelines.search("lefev", RADIOLOGIST)] == [
        "MRN6001"
    ]
    assert [m.patient.patient_id for m in node.timelines.search("MRN6004", RADIOLOGIST)] == [
        "MRN6004"
    ]
    assert node.timelines.search("MRN6004", CLINICIAN) == []
    with pytest.raises(UnknownPatientTimelineError):
        node.timelines.timeline("MRN6004", CLINICIAN, issuer="CHILDRENS")
    with node.database.reading() as session:
        looks = session.execute(
            select(AuditEvent.event_id, AuditEvent.user).where(AuditEvent.user == "dr.okafor")
        ).all()
    assert [tuple(look) for look in looks] == [("110112", "dr.okafor")]  # the search
