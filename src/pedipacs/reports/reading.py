"""The radiologists' reading worklist: exams whose images arrived and whose final report is not
signed yet, most urgent first.

Urgency, in order: STAT; then the emergency department, intensive care and ASAP orders; then
inpatients; then outpatients. Within one urgency, the exam waiting longest (since its images
arrived) comes first. Each entry says who is reading it (an unexpired claim), how many other
studies the child has (priors), and the report's status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import ImagingOrder, Patient, ReadingClaim, Report, Series, Study
from pedipacs.model.origin import Origin
from pedipacs.model.reports import (
    ClaimRecord,
    PriorStudy,
    ReadingFilter,
    ReadingItem,
    ReadingPage,
    ReportStatus,
    Urgency,
)
from pedipacs.model.ris import OrderStatus, Priority
from pedipacs.reports.claims import current_claim, release_claim, take_claim
from pedipacs.reports.exams import (
    modalities_of,
    order_by_accession,
    patient_line,
    patient_of,
    procedure_descriptions,
)
from pedipacs.security.audit import audited_read, record_query

# Exams with images, not yet reported.
WAITING = (OrderStatus.ARRIVED, OrderStatus.IN_PROGRESS, OrderStatus.COMPLETED)
UNSIGNED = (ReportStatus.DRAFT, ReportStatus.PRELIMINARY)
MAX_PAGE = 200
EMERGENCY_CLASS = "E"  # HL7 table 0004 (PV1-2)
INPATIENT_CLASS = "I"
DEFAULT_INTENSIVE_CARE_UNITS = ("ED", "ER", "NICU", "PICU", "ICU", "CICU", "PCICU")


@dataclass(frozen=True, slots=True)
class Facets:
    """The values the worklist's filters offer: those of the exams waiting now."""

    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    locations: tuple[str, ...]
    departments: tuple[str, ...]


def urgency_rank(units: Iterable[str]) -> ColumnElement[int]:
    """The SQL for an exam's urgency rank (`Urgency.rank`)."""
    acute = [unit.upper() for unit in units]
    return case(
        (ImagingOrder.priority == Priority.STAT, Urgency.STAT.rank),
        (
            or_(
                ImagingOrder.priority == Priority.ASAP,
                ImagingOrder.patient_class == EMERGENCY_CLASS,
                ImagingOrder.patient_location.in_(acute),
                func.upper(ImagingOrder.ordering_department).in_(acute),
            ),
            Urgency.EMERGENCY.rank,
        ),
        (ImagingOrder.patient_class == INPATIENT_CLASS, Urgency.INPATIENT.rank),
        else_=Urgency.OUTPATIENT.rank,
    )


def waiting_since() -> ColumnElement[datetime]:
    """Since when an exam waits: its images' arrival, else its order."""
    return func.coalesce(
        ImagingOrder.images_arrived_at, ImagingOrder.ordered_at, ImagingOrder.created_at
    )


def waiting_exams() -> Select[int]:
    """Orders with images and no signed report (the worklist, unfiltered)."""
    return (
        select(ImagingOrder.id)
        .outerjoin(Report, Report.order_fk == ImagingOrder.id)
        .where(
            ImagingOrder.status.in_([str(s) for s in WAITING]),
            or_(Report.id.is_(None), Report.status.in_([str(s) for s in UNSIGNED])),
        )
    )


def _series_of_order(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """Orders with a series matching `condition`. Not correlated: the matching orders are found
    once (a correlated EXISTS made SQLite walk every series of the modality for each order)."""
    return ImagingOrder.id.in_(
        select(Study.order_fk)
        .join(Series, Series.study_fk == Study.id)
        .where(Study.order_fk.is_not(None), condition)
    )


def _filtered(statement: Select[int], wanted: ReadingFilter) -> Select[int]:
    if wanted.modality:
        statement = statement.where(_series_of_order(Series.modality == wanted.modality.upper()))
    if wanted.body_part:
        statement = statement.where(
            _series_of_order(func.upper(Series.body_part_examined) == wanted.body_part.upper())
        )
    if wanted.location:
        statement = statement.where(ImagingOrder.patient_location == wanted.location.upper())
    if wanted.department:
        statement = statement.where(
            func.upper(ImagingOrder.ordering_department) == wanted.department.upper()
        )
    return statement


def _scoped(statement: Select[int], origin: Origin) -> Select[int]:
    if origin.patient_scope is None:
        return statement
    return statement.where(
        ImagingOrder.patient_fk.in_(
            select(Patient.id).where(Patient.patient_id.in_(sorted(origin.patient_scope)))
        )
    )


class ReadingWorklistService:
    def __init__(
        self,
        database: Database,
        *,
        claim_duration: timedelta = timedelta(minutes=30),
        intensive_care_units: Sequence[str] = DEFAULT_INTENSIVE_CARE_UNITS,
    ) -> None:
        self._database = database
        self._claim_duration = claim_duration
        self._units = tuple(unit.upper() for unit in intensive_care_units)

    def page(self, wanted: ReadingFilter, origin: Origin) -> ReadingPage:
        """One page of the worklist; the look is audited as a query."""
        limit = max(1, min(wanted.limit, MAX_PAGE))
        offset = max(0, wanted.offset)
        rank = urgency_rank(self._units)
        base = _scoped(_filtered(waiting_exams(), wanted), origin)

        def read(session: Session) -> ReadingPage:
            total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
            ids = session.scalars(
                base.order_by(rank, waiting_since(), ImagingOrder.id).limit(limit).offset(offset)
            ).all()
            items = self._items(session, list(ids))
            return ReadingPage(tuple(items), int(total), offset, limit)

        def audit(session: Session, page: ReadingPage) -> None:
            record_query(
                session, origin, (item.patient.patient_id for item in page.items),
                f"reading worklist: {page.total} waiting, {len(page.items)} shown",
            )  # fmt: skip

        return audited_read(self._database, read, audit)

    def _items(self, session: Session, ids: list[int]) -> list[ReadingItem]:
        if not ids:
            return []
        rank = urgency_rank(self._units)
        rows = session.execute(
            select(ImagingOrder, Patient, Report.status, rank.label("rank"))
            .join(Patient, Patient.id == ImagingOrder.patient_fk)
            .outerjoin(Report, Report.order_fk == ImagingOrder.id)
            .where(ImagingOrder.id.in_(ids))
        ).all()
        by_id = {row[0].id: row for row in rows}
        studies: dict[int, list[Study]] = defaultdict(list)
        for study in session.scalars(select(Study).where(Study.order_fk.in_(ids))):
            studies[study.order_fk or 0].append(study)
        body_parts: dict[int, set[str]] = defaultdict(set)
        for order_fk, part in session.execute(
            select(Study.order_fk, Series.body_part_examined)
            .join(Series, Series.study_fk == Study.id)
            .where(Study.order_fk.in_(ids), Series.body_part_examined.is_not(None))
            .distinct()
        ):
            if order_fk is not None and part:
                body_parts[order_fk].add(part)
        procedures = procedure_descriptions(session, ids)
        now = utc_now()
        claims = {
            claim.order_fk: claim
            for claim in session.scalars(select(ReadingClaim).where(ReadingClaim.order_fk.in_(ids)))
            if aware_utc(claim.expires_at) > now
        }
        items = []
        for order_id in ids:
            order, patient, report_status, rank_value = by_id[order_id]
            own = studies.get(order_id, [])
            claim = claims.get(order_id)
            items.append(
                ReadingItem(
                    accession_number=order.accession_number,
                    patient=patient_line(patient),
                    urgency=list(Urgency)[rank_value],
                    priority=Priority(order.priority),
                    patient_class=order.patient_class,
                    location=order.patient_location,
                    department=order.ordering_department,
                    reason=order.reason,
                    procedure=procedures.get(order.id),
                    modalities=modalities_of(own),
                    body_parts=tuple(sorted(body_parts.get(order_id, ()))),
                    study_instance_uids=tuple(s.study_instance_uid for s in own),
                    waiting_since=aware_utc(
                        order.images_arrived_at or order.ordered_at or order.created_at
                    ),
                    number_of_priors=max(0, patient.number_of_patient_related_studies - len(own)),
                    report_status=ReportStatus(report_status) if report_status else None,
                    claimed_by=claim.username if claim else None,
                    claim_expires_at=aware_utc(claim.expires_at) if claim else None,
                )
            )
        return items

    def facets(self) -> Facets:
        """The modalities, body parts, locations and departments of the waiting exams."""
        waiting = waiting_exams().subquery()
        with self._database.reading() as session:
            in_waiting = ImagingOrder.id.in_(select(waiting.c.id))
            series = (
                select(Series)
                .join(Study, Study.id == Series.study_fk)
                .join(ImagingOrder, ImagingOrder.id == Study.order_fk)
                .where(in_waiting)
                .subquery()
            )
            return Facets(
                modalities=_distinct(session, select(series.c.modality)),
                body_parts=_distinct(session, select(func.upper(series.c.body_part_examined))),
                locations=_distinct(
                    session, select(ImagingOrder.patient_location).where(in_waiting)
                ),
                departments=_distinct(
                    session, select(ImagingOrder.ordering_department).where(in_waiting)
                ),
            )

    def claim(self, accession: str, origin: Origin) -> ClaimRecord:
        """Take (or renew) the exam for the asker; refused while a colleague holds it."""
        user = origin.user or origin.who

        def work(session: Session) -> ClaimRecord:
            order = order_by_accession(session, accession, for_update=True)
            return take_claim(session, order, user, self._claim_duration)

        return self._database.transaction(work)

    def release(self, accession: str, origin: Origin) -> bool:
        """Give the exam back to the worklist (the asker's own claim only)."""
        user = origin.user or origin.who

        def work(session: Session) -> bool:
            order = order_by_accession(session, accession)
            return release_claim(session, order.id, user)

        return self._database.transaction(work)

    def current_claim(self, accession: str) -> ClaimRecord | None:
        with self._database.reading() as session:
            order = order_by_accession(session, accession)
            claim = current_claim(session, order.id, utc_now())
            if claim is None:
                return None
            return ClaimRecord(
                accession, claim.username, aware_utc(claim.claimed_at), aware_utc(claim.expires_at)
            )

    def priors(self, accession: str, origin: Origin) -> tuple[PriorStudy, ...]:
        """The child's other studies, most relevant first: the exam's modalities first, then
        the newest. Audited as a query."""

        def read(session: Session) -> tuple[str, tuple[PriorStudy, ...]]:
            order = order_by_accession(session, accession)
            patient = patient_of(session, order)
            if not origin.sees(patient.patient_id):
                return patient.patient_id, ()
            own = session.scalars(select(Study).where(Study.order_fk == order.id)).all()
            wanted = set(modalities_of(own))
            rows = session.execute(
                select(Study, Report.status)
                .outerjoin(Report, and_(Report.order_fk == Study.order_fk))
                .where(Study.patient_fk == patient.id, Study.id.not_in([s.id for s in own]))
            ).all()
            priors = [
                PriorStudy(
                    study_instance_uid=study.study_instance_uid,
                    study_date=study.study_date,
                    study_description=study.study_description,
                    modalities=modalities_of([study]),
                    accession_number=study.accession_number,
                    number_of_instances=study.number_of_study_related_instances,
                    report_status=ReportStatus(status) if status else None,
                )
                for study, status in rows
            ]
            priors.sort(key=lambda p: p.study_date.toordinal() if p.study_date else 0, reverse=True)
            priors.sort(key=lambda p: not (set(p.modalities) & wanted))
            return patient.patient_id, tuple(priors)

        def audit(session: Session, found: tuple[str, tuple[PriorStudy, ...]]) -> None:
            patient_id, priors = found
            record_query(session, origin, [patient_id] if priors else [],
                         f"priors of {accession}: {len(priors)}")  # fmt: skip

        return audited_read(self._database, read, audit)[1]


def _distinct(session: Session, statement: Select[str | None]) -> tuple[str, ...]:
    return tuple(sorted({value for value in session.scalars(statement.distinct()) if value}))
