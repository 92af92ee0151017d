"""Orders as they are read: the summary the order services answer, one page of the orders list
and one order's details (the orders page, `/api/orders`). Read only, in the caller's session;
`OrderService` (`ris/orders.py`) gives them a transaction and audits each read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc
from pedipacs.db.tables import (
    ImagingOrder,
    Patient,
    PatientIdentifier,
    RequestedProcedure,
    ScheduledStep,
    Study,
)
from pedipacs.errors import InvalidInput
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    OrderSummary,
    PatientIdentity,
    PatientRegistration,
    Priority,
    ProcedureRequest,
    ScheduledStepRequest,
    StepStatus,
)
from pedipacs.model.values import pn_search_form
from pedipacs.ris.patients import identity_from_patient, registration_from_patient

MAX_PAGE = 200
_PRIORITY_RANK = {Priority.STAT: 0, Priority.ASAP: 1, Priority.ROUTINE: 2}


def order_summary(session: Session, row: ImagingOrder) -> OrderSummary:
    """What the order services answer: the order, its patient, its Study Instance UIDs and
    step IDs."""
    patient = session.get(Patient, row.patient_fk)
    assert patient is not None
    procedures = session.execute(
        select(RequestedProcedure.id, RequestedProcedure.study_instance_uid)
        .where(RequestedProcedure.order_fk == row.id)
        .order_by(RequestedProcedure.id)
    ).all()
    steps = session.scalars(
        select(ScheduledStep.step_id)
        .where(ScheduledStep.procedure_fk.in_([p.id for p in procedures]))
        .order_by(ScheduledStep.id)
    ).all()
    return OrderSummary(
        accession_number=row.accession_number,
        patient=identity_from_patient(patient),
        status=OrderStatus(row.status),
        priority=Priority(row.priority),
        placer_order_number=row.placer_order_number,
        study_instance_uids=tuple(p.study_instance_uid for p in procedures),
        step_ids=tuple(steps),
    )


@dataclass(frozen=True, slots=True)
class OrderSearch:
    """Which orders a list shows; every field given narrows it."""

    statuses: frozenset[OrderStatus] = frozenset()  # empty: any status
    scheduled_on: date | None = None  # a step is scheduled that day
    modality: str | None = None  # a step is for that modality
    patient: str | None = None  # a patient identifier, or the start of a family or given name
    limit: int = 50
    offset: int = 0

    def describe(self) -> str:
        """The criteria as the audit trail records them.

        >>> OrderSearch(frozenset({OrderStatus.SCHEDULED}), modality="US").describe()
        'status=scheduled, modality=US, offset=0, limit=50'
        """
        parts = []
        if self.statuses:
            parts.append("status=" + "|".join(sorted(self.statuses)))
        if self.scheduled_on is not None:
            parts.append(f"date={self.scheduled_on.isoformat()}")
        if self.modality:
            parts.append(f"modality={self.modality}")
        if self.patient:
            parts.append(f"patient={self.patient}")
        return ", ".join([*parts, f"offset={self.offset}", f"limit={self.limit}"])


@dataclass(frozen=True, slots=True)
class OrderListItem:
    """An order as a list shows it: its patient, what and when (the first step scheduled)."""

    accession_number: str
    status: OrderStatus
    priority: Priority
    patient: PatientIdentity
    patient_name: str | None
    patient_birth_date: date | None
    patient_sex: str | None
    is_temporary: bool
    description: str | None
    modalities: tuple[str, ...]
    station_ae_titles: tuple[str, ...]
    scheduled_start: datetime | None
    referring_physician: str | None


@dataclass(frozen=True, slots=True)
class OrderPage:
    items: tuple[OrderListItem, ...]
    offset: int
    limit: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class ArrivedStudy:
    """A stored study matched to the order (reconciliation): the images of the exam."""

    study_instance_uid: str
    study_date: date | None
    modalities: tuple[str, ...]
    series: int
    instances: int


@dataclass(frozen=True, slots=True)
class OrderDetail:
    """An order as it stands. `request` is what would re-create it (Study Instance UIDs
    included): change it with `dataclasses.replace` and give it to `OrderService.change_for`."""

    request: OrderRequest
    status: OrderStatus
    patient: PatientRegistration  # the primary identifier and the demographics kept
    # The status of each step, in the order of `request.procedures` and their steps.
    step_statuses: tuple[tuple[StepStatus, ...], ...]
    created_at: datetime
    updated_at: datetime
    studies: tuple[ArrivedStudy, ...] = ()


def search_orders(
    session: Session, criteria: OrderSearch, patient_scope: frozenset[str] | None = None
) -> OrderPage:
    """The orders matching `criteria`, soonest scheduled first (unscheduled last), then by
    priority; `patient_scope`, when given, keeps only those patients' orders."""
    if not 1 <= criteria.limit <= MAX_PAGE or criteria.offset < 0:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE} and offset 0 or more")
    steps = (
        select(ScheduledStep.id)
        .join(RequestedProcedure, RequestedProcedure.id == ScheduledStep.procedure_fk)
        .where(RequestedProcedure.order_fk == ImagingOrder.id)
    )
    earliest = (
        select(func.min(ScheduledStep.start_date))
        .join(RequestedProcedure, RequestedProcedure.id == ScheduledStep.procedure_fk)
        .where(RequestedProcedure.order_fk == ImagingOrder.id)
        .scalar_subquery()
    )
    rank = case(
        {str(p): r for p, r in _PRIORITY_RANK.items()}, value=ImagingOrder.priority, else_=3
    )
    statement = select(ImagingOrder, Patient).join(Patient, Patient.id == ImagingOrder.patient_fk)
    if criteria.statuses:
        statement = statement.where(ImagingOrder.status.in_(sorted(criteria.statuses)))
    if criteria.scheduled_on is not None:
        statement = statement.where(
            steps.where(ScheduledStep.start_date == criteria.scheduled_on).exists()
        )
    if criteria.modality:
        modality = criteria.modality.strip().upper()
        statement = statement.where(steps.where(ScheduledStep.modality == modality).exists())
    if criteria.patient and criteria.patient.strip():
        statement = statement.where(patient_matches(criteria.patient.strip()))
    if patient_scope is not None:
        statement = statement.where(Patient.patient_id.in_(sorted(patient_scope)))
    statement = (
        statement.order_by(earliest.is_(None), earliest, rank, ImagingOrder.id)
        .offset(criteria.offset)
        .limit(criteria.limit + 1)
    )
    rows = session.execute(statement).all()
    shown = rows[: criteria.limit]
    details = _step_overview(session, [order.id for order, _ in shown])
    return OrderPage(
        items=tuple(_list_item(order, patient, details.get(order.id)) for order, patient in shown),
        offset=criteria.offset,
        limit=criteria.limit,
        has_more=len(rows) > criteria.limit,
    )


def patient_matches(text: str) -> ColumnElement[bool]:
    """Any identifier of the patient, or a name part starting with `text` (PN search form:
    upper case, `^` between the parts)."""
    prefix = pn_search_form(text) or ""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    known_as = select(PatientIdentifier.id).where(
        PatientIdentifier.patient_fk == Patient.id, PatientIdentifier.identifier == text
    )
    return or_(
        Patient.patient_id == text,
        known_as.exists(),
        Patient.patient_name_search.like(f"{escaped}%", escape="\\"),
        Patient.patient_name_search.like(f"%^{escaped}%", escape="\\"),
    )


@dataclass
class _Overview:
    description: str | None = None
    modalities: list[str] = field(default_factory=list)
    stations: list[str] = field(default_factory=list)
    start: datetime | None = None


def _step_overview(session: Session, order_ids: list[int]) -> dict[int, _Overview]:
    overview: dict[int, _Overview] = {}
    if not order_ids:
        return overview
    rows = session.execute(
        select(RequestedProcedure.order_fk, RequestedProcedure.description, ScheduledStep)
        .join(ScheduledStep, ScheduledStep.procedure_fk == RequestedProcedure.id)
        .where(RequestedProcedure.order_fk.in_(order_ids))
        .order_by(RequestedProcedure.id, ScheduledStep.id)
    )
    for order_id, description, step in rows:
        seen = overview.setdefault(order_id, _Overview())
        seen.description = seen.description or description or step.description
        if step.modality and step.modality not in seen.modalities:
            seen.modalities.append(step.modality)
        if step.station_ae_title and step.station_ae_title not in seen.stations:
            seen.stations.append(step.station_ae_title)
        start = _start_of(step)
        if start is not None and (seen.start is None or start < seen.start):
            seen.start = start
    return overview


def _start_of(step: ScheduledStep) -> datetime | None:
    if step.start_date is None:
        return None
    return datetime.combine(step.start_date, step.start_time or time())


def _list_item(order: ImagingOrder, patient: Patient, seen: _Overview | None) -> OrderListItem:
    seen = seen or _Overview()
    return OrderListItem(
        accession_number=order.accession_number,
        status=OrderStatus(order.status),
        priority=Priority(order.priority),
        patient=identity_from_patient(patient),
        patient_name=patient.patient_name,
        patient_birth_date=patient.patient_birth_date,
        patient_sex=patient.patient_sex,
        is_temporary=bool(patient.is_temporary),
        description=seen.description,
        modalities=tuple(seen.modalities),
        station_ae_titles=tuple(seen.stations),
        scheduled_start=seen.start,
        referring_physician=order.referring_physician_name,
    )


def order_detail(session: Session, row: ImagingOrder) -> OrderDetail:
    """The order as it stands, with its patient, procedures and steps."""
    patient = session.get(Patient, row.patient_fk)
    assert patient is not None
    identity = identity_from_patient(patient)
    procedures, statuses = [], []
    for procedure in session.scalars(
        select(RequestedProcedure)
        .where(RequestedProcedure.order_fk == row.id)
        .order_by(RequestedProcedure.id)
    ):
        steps = session.scalars(
            select(ScheduledStep)
            .where(ScheduledStep.procedure_fk == procedure.id)
            .order_by(ScheduledStep.id)
        ).all()
        procedures.append(_procedure_request(procedure, steps))
        statuses.append(tuple(StepStatus(step.status) for step in steps))
    request = OrderRequest(
        patient=identity,
        accession_number=row.accession_number,
        priority=Priority(row.priority),
        placer_order_number=row.placer_order_number,
        filler_order_number=row.filler_order_number,
        reason=row.reason,
        referring_physician=row.referring_physician_name,
        ordering_department=row.ordering_department,
        patient_class=row.patient_class,
        patient_weight=row.patient_weight,
        ordered_at=row.ordered_at,
        procedures=tuple(procedures),
    )
    return OrderDetail(
        request=request,
        status=OrderStatus(row.status),
        patient=registration_from_patient(patient, (identity,)),
        step_statuses=tuple(statuses),
        created_at=aware_utc(row.created_at),
        updated_at=aware_utc(row.updated_at),
        studies=tuple(
            ArrivedStudy(
                study.study_instance_uid,
                study.study_date,
                tuple(m for m in study.modalities_in_study.split("\\") if m),
                study.number_of_study_related_series,
                study.number_of_study_related_instances,
            )
            for study in session.scalars(
                select(Study).where(Study.order_fk == row.id).order_by(Study.id)
            )
        ),
    )


def _procedure_request(
    procedure: RequestedProcedure, steps: Sequence[ScheduledStep]
) -> ProcedureRequest:
    return ProcedureRequest(
        requested_procedure_id=procedure.requested_procedure_id,
        description=procedure.description,
        code_value=procedure.code_value,
        coding_scheme=procedure.coding_scheme,
        code_meaning=procedure.code_meaning,
        study_instance_uid=procedure.study_instance_uid,
        steps=tuple(
            ScheduledStepRequest(
                step_id=step.step_id,
                modality=step.modality,
                station_ae_title=step.station_ae_title,
                station_name=step.station_name,
                start=_start_of(step),
                description=step.description,
                performing_physician=step.performing_physician_name,
            )
            for step in steps
        ),
    )
