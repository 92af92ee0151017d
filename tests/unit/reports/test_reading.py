"""The reading worklist on both databases: most urgent first (STAT, then emergency and intensive
care, then inpatients, then outpatients), longest waiting first within each; filters; claims
that keep a colleague off and lapse by themselves; priors of the same child."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from pedipacs.db.base import utc_now
from pedipacs.db.tables import ImagingOrder, ReadingClaim
from pedipacs.model.origin import Origin
from pedipacs.model.reports import ReadingFilter, ReportStatus, Urgency
from pedipacs.model.ris import Priority
from pedipacs.node import Node
from pedipacs.reports.authoring import ReportDraft
from pedipacs.reports.claims import ClaimedByOtherError
from support.reporting import COLLEAGUE, FINDINGS_TEXT, RADIOLOGIST, child, exam


def arrived_minutes_ago(node: Node, accession: str, minutes: int) -> None:
    with node.database.unit_of_work() as session:
        session.execute(
            update(ImagingOrder)
            .where(ImagingOrder.accession_number == accession)
            .values(images_arrived_at=utc_now() - timedelta(minutes=minutes))
        )


@pytest.fixture
def waiting(node: Node) -> dict[str, str]:
    """Six exams of every urgency, arrived at different times."""
    exams = {
        "outpatient old": exam(node, 1, patient_class="O"),
        "inpatient": exam(node, 2, patient_class="I"),
        "picu": exam(node, 3, patient_class="I", location="PICU"),
        "emergency": exam(node, 4, patient_class="E"),
        "stat": exam(
            node, 5, priority=Priority.STAT, patient_class="O", modality="CR", body_part="CHEST"
        ),
        "outpatient new": exam(node, 6, patient_class="O"),
    }
    newest_first = ["outpatient new", "stat", "emergency", "picu", "inpatient", "outpatient old"]
    for minutes, name in enumerate(newest_first, start=1):
        arrived_minutes_ago(node, exams[name], minutes * 10)
    return exams


def listed(node: Node, wanted: ReadingFilter | None = None) -> list[str]:
    page = node.reading.page(wanted or ReadingFilter(), RADIOLOGIST)
    return [item.accession_number for item in page.items]


def test_the_most_urgent_then_the_longest_waiting_come_first(
    node: Node, waiting: dict[str, str]
) -> None:
    page = node.reading.page(ReadingFilter(), RADIOLOGIST)
    assert [item.accession_number for item in page.items] == [
        waiting[name]
        for name in ("stat", "picu", "emergency", "inpatient", "outpatient old", "outpatient new")
    ]
    assert [item.urgency for item in page.items] == [
        Urgency.STAT, Urgency.EMERGENCY, Urgency.EMERGENCY, Urgency.INPATIENT,
        Urgency.OUTPATIENT, Urgency.OUTPATIENT,
    ]  # fmt: skip
    assert page.total == 6
    first = page.items[0]
    assert (first.modalities, first.body_parts, first.reason) == (
        ("CR",), ("CHEST",), "Right iliac fossa pain"
    )  # fmt: skip


def test_filters_and_pages(node: Node, waiting: dict[str, str]) -> None:
    assert listed(node, ReadingFilter(modality="cr")) == [waiting["stat"]]
    assert listed(node, ReadingFilter(body_part="chest")) == [waiting["stat"]]
    assert listed(node, ReadingFilter(location="picu")) == [waiting["picu"]]
    second = node.reading.page(ReadingFilter(limit=2, offset=2), RADIOLOGIST)
    assert [i.accession_number for i in second.items] == [waiting["emergency"],
                                                          waiting["inpatient"]]  # fmt: skip
    facets = node.reading.facets()
    assert (facets.modalities, facets.locations) == (("CR", "US"), ("PICU",))


def test_a_final_report_takes_the_exam_off_a_preliminary_one_does_not(
    node: Node, waiting: dict[str, str]
) -> None:
    node.reports.sign(waiting["stat"], ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=False)
    node.reports.sign(waiting["picu"], ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=True)
    page = node.reading.page(ReadingFilter(), RADIOLOGIST)
    statuses = {item.accession_number: item.report_status for item in page.items}
    assert waiting["picu"] not in statuses
    assert statuses[waiting["stat"]] is ReportStatus.PRELIMINARY


def test_a_claim_keeps_a_colleague_off_until_released_or_lapsed(
    node: Node, waiting: dict[str, str]
) -> None:
    accession = waiting["emergency"]
    claim = node.reading.claim(accession, RADIOLOGIST)
    assert claim.username == "dr.reed"
    [item] = [i for i in node.reading.page(ReadingFilter(), COLLEAGUE).items
              if i.accession_number == accession]  # fmt: skip
    assert item.claimed_by == "dr.reed"
    with pytest.raises(ClaimedByOtherError, match=r"being read by dr\.reed"):
        node.reading.claim(accession, COLLEAGUE)
    node.reading.claim(accession, RADIOLOGIST)  # renewing one's own claim is fine
    with node.database.unit_of_work() as session:  # the end of a shift: the claim lapses
        session.execute(update(ReadingClaim).values(expires_at=utc_now() - timedelta(seconds=1)))
    assert node.reading.claim(accession, COLLEAGUE).username == "dr.osei"
    assert not node.reading.release(accession, RADIOLOGIST)  # not theirs any more
    assert node.reading.release(accession, COLLEAGUE)
    assert node.reading.current_claim(accession) is None


def test_priors_of_the_same_child_most_relevant_first(node: Node) -> None:
    patient = child(20)
    chest = exam(node, 21, patient=patient, modality="CR", body_part="CHEST")
    older_us = exam(node, 22, patient=patient)
    current = exam(node, 23, patient=patient)
    exam(node, 24)  # another child
    priors = node.reading.priors(current, RADIOLOGIST)
    assert [p.accession_number for p in priors] == [older_us, chest]  # same modality first
    [item] = [i for i in node.reading.page(ReadingFilter(), RADIOLOGIST).items
              if i.accession_number == current]  # fmt: skip
    assert item.number_of_priors == 2


def test_a_clinician_sees_only_the_exams_of_their_patients(
    node: Node, waiting: dict[str, str]
) -> None:
    clinician = Origin(Origin.http("dr.okafor", "10.0.0.20").door, user="dr.okafor",
                       patient_scope=frozenset({"MRN6004"}))  # fmt: skip
    assert listed_by(node, clinician) == [waiting["emergency"]]


def listed_by(node: Node, origin: Origin) -> list[str]:
    return [i.accession_number for i in node.reading.page(ReadingFilter(), origin).items]
