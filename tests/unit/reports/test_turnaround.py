"""Turnaround times on both databases: order -> images -> preliminary -> final, medians and
90th percentiles by modality (the images', not the report objects'), priority and shift in the
hospital's time zone; the exams waiting past their priority's target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pedipacs.db.base import utc_now
from pedipacs.db.tables import ImagingOrder, Report, Study
from pedipacs.errors import InvalidInput
from pedipacs.jobs.worker import JobWorker
from pedipacs.model.ris import Priority
from pedipacs.node import Node
from pedipacs.reports.authoring import ReportDraft
from pedipacs.reports.distribution import REPORT_OBJECT_JOB
from pedipacs.reports.report_objects import report_object_handler
from pedipacs.reports.turnaround import TurnaroundService
from support.reporting import FINDINGS_TEXT, RADIOLOGIST, exam

# Monday 7 December 2026, 10:00 in Paris (09:00 UTC): a day-shift exam.
MONDAY_MORNING = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def set_times(
    node: Node,
    accession: str,
    *,
    ordered: datetime,
    arrived: datetime,
    preliminary: datetime | None = None,
    signed: datetime | None = None,
) -> None:
    with node.database.unit_of_work() as session:
        session.execute(
            update(ImagingOrder)
            .where(ImagingOrder.accession_number == accession)
            .values(ordered_at=ordered, images_arrived_at=arrived)
        )
        order_id = session.scalar(
            ImagingOrder.__table__.select()  # type: ignore[attr-defined]
            .with_only_columns(ImagingOrder.id)
            .where(ImagingOrder.accession_number == accession)
        )
        session.execute(
            update(Report)
            .where(Report.order_fk == order_id)
            .values(preliminary_at=preliminary, signed_at=signed)
        )


def reported(node: Node, number: int, **options: object) -> str:
    accession = exam(node, number, **options)  # type: ignore[arg-type]
    node.reports.sign(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=True)
    return accession


def test_figures_by_modality_priority_and_shift(node: Node) -> None:
    stat = reported(node, 1, priority=Priority.STAT)
    routine = reported(node, 2, modality="CR", body_part="CHEST")
    night = reported(node, 3)
    at = MONDAY_MORNING
    set_times(
        node,
        stat,
        ordered=at,
        arrived=at + timedelta(minutes=20),
        preliminary=at + timedelta(minutes=50),
        signed=at + timedelta(minutes=80),
    )
    set_times(
        node, routine, ordered=at - timedelta(hours=2), arrived=at, signed=at + timedelta(hours=5)
    )
    night_arrival = at + timedelta(hours=12)  # 22:00 in Paris
    set_times(
        node,
        night,
        ordered=night_arrival,
        arrived=night_arrival,
        signed=night_arrival + timedelta(minutes=30),
    )
    # The signed reports stored in their studies as Encapsulated PDF (modality DOC).
    JobWorker(node.jobs, {REPORT_OBJECT_JOB: report_object_handler(node.report_objects)}).run_due()
    service = TurnaroundService(node.database, timezone="Europe/Paris")
    report = service.report(RADIOLOGIST, since=at - timedelta(days=1), until=at + timedelta(days=1))
    assert report.overall.count == 3
    assert report.overall.images_to_final_p50 == 60.0  # 60, 300, 30 minutes
    by_modality = {f.group: f for f in report.by_modality}
    assert set(by_modality) == {"CR", "US"}  # the report objects (DOC) are not a modality
    with node.database.reading() as session:
        stored = session.scalars(select(Study.modalities_in_study)).all()
    assert sorted(stored) == ["CR\\DOC", "DOC\\US", "DOC\\US"]
    assert by_modality["CR"].images_to_final_p50 == 300.0
    assert by_modality["US"].order_to_images_p50 == 10.0  # 20 and 0 minutes
    stat_figures = {f.group: f for f in report.by_priority}["STAT"]
    assert stat_figures.images_to_preliminary_p50 == 30.0
    assert {f.group: f.count for f in report.by_shift} == {"day": 2, "night": 1}


def test_exams_past_their_target_are_listed_most_overdue_first(node: Node) -> None:
    stat = exam(node, 11, priority=Priority.STAT)
    routine = exam(node, 12)
    recent = exam(node, 13, priority=Priority.STAT)
    now = utc_now()
    set_times(node, stat, ordered=now, arrived=now - timedelta(minutes=90))
    set_times(node, routine, ordered=now, arrived=now - timedelta(days=2))
    set_times(node, recent, ordered=now, arrived=now - timedelta(minutes=10))
    report = node.turnaround.report(RADIOLOGIST)
    assert [(o.accession_number, o.target_minutes) for o in report.overdue] == [
        (routine, 1440),
        (stat, 60),
    ]
    assert report.overdue[0].modalities == ("US",)


def test_a_period_must_make_sense(node: Node) -> None:
    with pytest.raises(InvalidInput, match="period"):
        node.turnaround.report(RADIOLOGIST, since=MONDAY_MORNING, until=MONDAY_MORNING)
