"""Turnaround times: for each exam, order -> images arrived -> preliminary -> final report, as
medians and 90th percentiles by modality, priority and shift (day, night, weekend in the
hospital's time zone), and the exams waiting now past their priority's target.

The figures cover exams whose images arrived in the period asked (30 days by default); an exam
without a preliminary (or final) report yet counts in the arrival figures only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import ImagingOrder, Patient, Report, Study
from pedipacs.errors import InvalidInput
from pedipacs.model.origin import Origin
from pedipacs.model.reports import (
    OverdueExam,
    ReportStatus,
    Shift,
    TurnaroundFigures,
    TurnaroundReport,
)
from pedipacs.model.ris import Priority
from pedipacs.reports.exams import image_modalities, patient_line
from pedipacs.reports.reading import waiting_exams, waiting_since
from pedipacs.security.audit import audited_read, record_query

DEFAULT_PERIOD = timedelta(days=30)
LONGEST_PERIOD = timedelta(days=400)
DAY_STARTS, NIGHT_STARTS = time(8, 0), time(18, 0)
SATURDAY = 5
MAX_OVERDUE = 200
LOOKUP_CHUNK = 500  # order IDs in one IN list
DEFAULT_TARGETS = {Priority.STAT: 60, Priority.ASAP: 240, Priority.ROUTINE: 1440}


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` quantile by linear interpolation between closest ranks; None if empty.

    >>> percentile([10, 20, 30, 40], 0.5), percentile([10, 20, 30, 40], 0.9), percentile([], 0.5)
    (25.0, 37.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def shift_of(moment: datetime, zone: ZoneInfo) -> Shift:
    """
    >>> from datetime import UTC
    >>> paris = ZoneInfo("Europe/Paris")
    >>> moments = [datetime(2026, 12, d, h, tzinfo=UTC) for d, h in ((7, 9), (7, 20), (5, 9))]
    >>> [shift_of(moment, paris) for moment in moments]
    [<Shift.DAY: 'day'>, <Shift.NIGHT: 'night'>, <Shift.WEEKEND: 'weekend'>]
    """
    local = moment.astimezone(zone)
    if local.weekday() >= SATURDAY:
        return Shift.WEEKEND
    return Shift.DAY if DAY_STARTS <= local.time() < NIGHT_STARTS else Shift.NIGHT


@dataclass(frozen=True, slots=True)
class _Exam:
    modality: str
    priority: Priority
    shift: Shift
    order_to_images: float | None  # minutes
    images_to_preliminary: float | None
    images_to_final: float | None


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    minutes = (aware_utc(end) - aware_utc(start)).total_seconds() / 60
    # Unplanned exams are often ordered after the images were taken: no negative waits.
    return max(0.0, minutes)


def _figures(group: str, exams: Sequence[_Exam]) -> TurnaroundFigures:
    def both(pick: Callable[[_Exam], float | None]) -> tuple[float | None, float | None]:
        values = [v for v in (pick(exam) for exam in exams) if v is not None]
        return percentile(values, 0.5), percentile(values, 0.9)

    arrival, preliminary, final = (
        both(lambda e: e.order_to_images),
        both(lambda e: e.images_to_preliminary),
        both(lambda e: e.images_to_final),
    )
    return TurnaroundFigures(group, len(exams), *arrival, *preliminary, *final)


def _grouped(exams: Iterable[_Exam], key: Callable[[_Exam], str]) -> tuple[TurnaroundFigures, ...]:
    groups: dict[str, list[_Exam]] = defaultdict(list)
    for exam in exams:
        groups[key(exam)].append(exam)
    return tuple(_figures(name, groups[name]) for name in sorted(groups))


class TurnaroundService:
    def __init__(
        self,
        database: Database,
        *,
        targets: Mapping[str, int] | None = None,
        timezone: str = "UTC",
    ) -> None:
        self._database = database
        given = {str(k).upper(): int(v) for k, v in (targets or {}).items()}
        self.targets = {p: given.get(p.value, DEFAULT_TARGETS[p]) for p in Priority}
        self._zone = ZoneInfo(timezone)

    def report(
        self,
        origin: Origin,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> TurnaroundReport:
        until = until or utc_now()
        since = since or until - DEFAULT_PERIOD
        if since >= until or until - since > LONGEST_PERIOD:
            raise InvalidInput(
                f"the period must be positive and at most {LONGEST_PERIOD.days} days"
            )

        def read(session: Session) -> TurnaroundReport:
            exams = self._exams(session, since, until)
            return TurnaroundReport(
                since=since,
                until=until,
                overall=_figures("all", exams),
                by_modality=_grouped(exams, lambda e: e.modality),
                by_priority=_grouped(exams, lambda e: e.priority.value),
                by_shift=_grouped(exams, lambda e: e.shift.value),
                overdue=self._overdue(session),
            )

        def audit(session: Session, report: TurnaroundReport) -> None:
            record_query(
                session, origin, (exam.patient.patient_id for exam in report.overdue),
                f"turnaround {since:%Y-%m-%d} to {until:%Y-%m-%d}: {report.overall.count} exams, "
                f"{len(report.overdue)} overdue",
            )  # fmt: skip

        return audited_read(self._database, read, audit)

    def _exams(self, session: Session, since: datetime, until: datetime) -> list[_Exam]:
        rows = session.execute(
            select(
                ImagingOrder.id,
                ImagingOrder.priority,
                func.coalesce(ImagingOrder.ordered_at, ImagingOrder.created_at),
                ImagingOrder.images_arrived_at,
                Report.preliminary_at,
                Report.signed_at,
            )
            .outerjoin(Report, Report.order_fk == ImagingOrder.id)
            .where(
                ImagingOrder.images_arrived_at >= since,
                ImagingOrder.images_arrived_at < until,
            )
        ).all()
        modalities = self._modalities(session, [row[0] for row in rows])
        exams = []
        for order_id, priority, ordered, arrived, preliminary, signed in rows:
            if arrived is None:  # excluded by the query; the type does not know it
                continue
            exams.append(
                _Exam(
                    modality=(modalities.get(order_id) or ("?",))[0],
                    priority=Priority(priority),
                    shift=shift_of(aware_utc(arrived), self._zone),
                    order_to_images=_minutes(ordered, arrived),
                    # A final report signed without a preliminary one was also the first read.
                    images_to_preliminary=_minutes(arrived, preliminary or signed),
                    images_to_final=_minutes(arrived, signed),
                )
            )
        return exams

    @staticmethod
    def _modalities(session: Session, order_ids: list[int]) -> dict[int, tuple[str, ...]]:
        """The image modalities of each order's studies (not its report objects)."""
        values: dict[int, list[str | None]] = defaultdict(list)
        for start in range(0, len(order_ids), LOOKUP_CHUNK):
            chunk = order_ids[start : start + LOOKUP_CHUNK]
            for order_fk, value in session.execute(
                select(Study.order_fk, Study.modalities_in_study)
                .where(Study.order_fk.in_(chunk))
                .order_by(Study.id)
            ):
                values[order_fk or 0].append(value)
        return {order_id: image_modalities(found) for order_id, found in values.items()}

    def _overdue(self, session: Session) -> tuple[OverdueExam, ...]:
        now = utc_now()
        waiting = waiting_exams().subquery()
        rows = session.execute(
            select(ImagingOrder, Patient, Report.status, waiting_since())
            .join(Patient, Patient.id == ImagingOrder.patient_fk)
            .outerjoin(Report, Report.order_fk == ImagingOrder.id)
            .where(
                ImagingOrder.id.in_(select(waiting.c.id)),
                waiting_since() < now - timedelta(minutes=min(self.targets.values())),
            )
        ).all()
        modalities = self._modalities(session, [row[0].id for row in rows])
        overdue = []
        for order, patient, report_status, since in rows:
            target = self.targets[Priority(order.priority)]
            waited = int((now - aware_utc(since)).total_seconds() // 60)
            if waited <= target:
                continue
            overdue.append(
                OverdueExam(
                    accession_number=order.accession_number,
                    patient=patient_line(patient),
                    priority=Priority(order.priority),
                    modalities=modalities.get(order.id, ()),
                    waiting_since=aware_utc(since),
                    minutes_waiting=waited,
                    target_minutes=target,
                    report_status=ReportStatus(report_status) if report_status else None,
                )
            )
        overdue.sort(key=lambda exam: exam.target_minutes - exam.minutes_waiting)
        return tuple(overdue[:MAX_OVERDUE])
