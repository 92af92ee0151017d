"""Imaging orders: placed, changed, cancelled; each with its requested procedures (and the
Study Instance UID the modality must use) and scheduled procedure steps (worklist items).

As in `ris/patients.py`, the functions taking a `Session` work in the caller's transaction;
`OrderService` gives them transactions of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time

from pydicom.uid import generate_uid
from sqlalchemy import ColumnElement, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    ImagingOrder,
    Patient,
    PatientIdentifier,
    PerformedStep,
    RequestedProcedure,
    ScheduledStep,
)
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.model.origin import Origin
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
from pedipacs.ris.patients import (
    UnknownPatientError,
    check_identity,
    find_patient,
    register_patient,
)
from pedipacs.ris.reconcile import reconcile_order
from pedipacs.security.audit import AuditEventId, AuditRecord, record

MAX_ACCESSION = 16  # VR SH
MAX_SHORT_ID = 16  # Requested Procedure ID, Scheduled Procedure Step ID (SH)
MAX_AE_TITLE = 16
UID_LENGTH = 64
# Orders in these states are over: they are neither changed nor cancelled again.
CLOSED = frozenset({OrderStatus.CANCELLED, OrderStatus.DISCONTINUED, OrderStatus.REPORTED})


class UnknownOrderError(NotFound):
    """No order has that accession number."""


class OrderExistsError(Conflict):
    """An order with that accession number exists already."""


class OrderClosedError(Conflict):
    """The order was cancelled, discontinued or reported: it cannot change any more."""


def check_order(order: OrderRequest) -> None:
    """Refuse what the worklist could not carry, naming the field (for an HL7 AE)."""
    check_identity(order.patient)
    accession = order.accession_number.strip()
    if not accession:
        raise InvalidInput("the accession number is empty")
    if len(accession) > MAX_ACCESSION or "\\" in accession:
        raise InvalidInput(f"accession number {accession!r}: at most {MAX_ACCESSION} characters")
    if not order.procedures:
        raise InvalidInput("the order requests no procedure")
    for procedure in order.procedures:
        _check_procedure(procedure)


def _check_procedure(procedure: ProcedureRequest) -> None:
    if not procedure.requested_procedure_id or len(procedure.requested_procedure_id) > MAX_SHORT_ID:
        raise InvalidInput(
            f"requested procedure ID {procedure.requested_procedure_id!r}: 1 to {MAX_SHORT_ID} "
            "characters"
        )
    uid = procedure.study_instance_uid
    if uid is not None and (
        not 0 < len(uid) <= UID_LENGTH or not all(c.isdigit() or c == "." for c in uid)
    ):
        raise InvalidInput(f"Study Instance UID {uid!r} is not a valid UID")
    if not procedure.steps:
        raise InvalidInput(
            f"requested procedure {procedure.requested_procedure_id} has no scheduled step"
        )
    for step in procedure.steps:
        if not step.step_id or len(step.step_id) > MAX_SHORT_ID:
            raise InvalidInput(
                f"scheduled step ID {step.step_id!r}: 1 to {MAX_SHORT_ID} characters"
            )
        if step.station_ae_title is not None and len(step.station_ae_title) > MAX_AE_TITLE:
            raise InvalidInput(f"station AE title {step.station_ae_title!r} is too long")


def place_order(session: Session, order: OrderRequest, origin: Origin) -> ImagingOrder:
    """A new order for a registered patient, scheduled (HL7 ORC-1 NW). Audited (110109)."""
    check_order(order)
    patient = _patient(session, order.patient)
    accession = order.accession_number.strip()
    if session.scalar(select(ImagingOrder.id).where(ImagingOrder.accession_number == accession)):
        raise OrderExistsError(f"an order with accession number {accession} exists")
    row = ImagingOrder(
        patient_fk=patient.id,
        accession_number=accession,
        status=OrderStatus.SCHEDULED,
    )
    _apply(row, order)
    session.add(row)
    session.flush()
    _schedule(session, row, order.procedures)
    _audit(session, origin, patient, "C", f"order {accession} placed ({row.priority})")
    reconcile_order(session, row, origin)  # images that arrived before their order
    return row


def change_order(session: Session, order: OrderRequest, origin: Origin) -> ImagingOrder:
    """Replace an open order's details and schedule (HL7 ORC-1 XO). Audited (110109)."""
    check_order(order)
    row = _open_order(session, order.accession_number)
    patient = _patient(session, order.patient)
    row.patient_fk = patient.id
    _apply(row, order)
    before = _step_snapshot(session, row)
    # Performed steps (MPPS) point at the steps replaced here: unlinked, then linked again to
    # the new step with the same IDs, which also keeps the status the modality gave it.
    session.execute(
        update(PerformedStep)
        .where(PerformedStep.scheduled_step_fk.in_([step.id for step in before.values()]))
        .values(scheduled_step_fk=None)
    )
    session.execute(
        delete(ScheduledStep).where(ScheduledStep.id.in_([step.id for step in before.values()]))
    )
    session.execute(delete(RequestedProcedure).where(RequestedProcedure.order_fk == row.id))
    session.flush()
    _schedule(session, row, order.procedures)
    for key, step in _step_rows(session, row).items():
        if key in before:
            step.status = before[key].status
            session.execute(
                update(PerformedStep)
                .where(PerformedStep.order_fk == row.id, PerformedStep.scheduled_step_fk.is_(None))
                .where(PerformedStep.id.in_(before[key].performed))
                .values(scheduled_step_fk=step.id)
            )
    _audit(session, origin, patient, "U", f"order {row.accession_number} changed")
    return row


@dataclass(frozen=True, slots=True)
class _StepBefore:
    id: int
    status: str
    performed: tuple[int, ...]  # the performed steps (MPPS) linked to it


def _step_rows(session: Session, order: ImagingOrder) -> dict[tuple[str, str], ScheduledStep]:
    """The order's scheduled steps by (requested procedure ID, step ID)."""
    rows = session.execute(
        select(RequestedProcedure.requested_procedure_id, ScheduledStep)
        .join(ScheduledStep, ScheduledStep.procedure_fk == RequestedProcedure.id)
        .where(RequestedProcedure.order_fk == order.id)
    ).all()
    return {(procedure_id, step.step_id): step for procedure_id, step in rows}


def _step_snapshot(session: Session, order: ImagingOrder) -> dict[tuple[str, str], _StepBefore]:
    """The order's steps before a change: their status and the performed steps linked."""
    steps = _step_rows(session, order)
    performed: dict[int, list[int]] = {}
    for performed_id, step_fk in session.execute(
        select(PerformedStep.id, PerformedStep.scheduled_step_fk).where(
            PerformedStep.scheduled_step_fk.in_([step.id for step in steps.values()])
        )
    ):
        if step_fk is not None:
            performed.setdefault(step_fk, []).append(performed_id)
    return {
        key: _StepBefore(step.id, step.status, tuple(performed.get(step.id, ())))
        for key, step in steps.items()
    }


def cancel_order(
    session: Session, accession_number: str, origin: Origin, *, reason: str | None = None
) -> ImagingOrder:
    """Cancel an open order and take its steps off the worklist (HL7 ORC-1 CA)."""
    row = _open_order(session, accession_number)
    row.status = OrderStatus.CANCELLED
    _set_step_status(session, row, StepStatus.CANCELLED)
    patient = session.get(Patient, row.patient_fk)
    _audit(session, origin, patient, "D", f"order {row.accession_number} cancelled"
           + (f": {reason}" if reason else ""))  # fmt: skip
    return row


def _open_order(session: Session, accession_number: str) -> ImagingOrder:
    row = session.scalar(
        select(ImagingOrder)
        .where(ImagingOrder.accession_number == accession_number.strip())
        .with_for_update()
    )
    if row is None:
        raise UnknownOrderError(f"no order with accession number {accession_number}")
    if row.status in CLOSED:
        raise OrderClosedError(f"order {accession_number} is {row.status}; it cannot change")
    return row


def _patient(session: Session, identity: PatientIdentity) -> Patient:
    patient = find_patient(session, identity)
    if patient is None:
        raise UnknownPatientError(f"patient {identity} is not registered")
    return patient


def _apply(row: ImagingOrder, order: OrderRequest) -> None:
    row.priority = Priority(order.priority)
    row.placer_order_number = order.placer_order_number
    row.filler_order_number = order.filler_order_number
    row.reason = order.reason
    row.referring_physician_name = order.referring_physician
    row.referring_physician_name_search = pn_search_form(order.referring_physician)
    row.ordering_department = order.ordering_department
    row.patient_class = order.patient_class
    row.patient_weight = order.patient_weight
    row.ordered_at = order.ordered_at.astimezone(UTC) if order.ordered_at else None


def _schedule(
    session: Session, row: ImagingOrder, procedures: tuple[ProcedureRequest, ...]
) -> None:
    for procedure in procedures:
        study_uid = procedure.study_instance_uid or generate_uid()
        taken = session.scalar(
            select(RequestedProcedure.order_fk).where(
                RequestedProcedure.study_instance_uid == study_uid
            )
        )
        if taken is not None:
            raise InvalidInput(f"Study Instance UID {study_uid} belongs to another order")
        requested = RequestedProcedure(
            order_fk=row.id,
            requested_procedure_id=procedure.requested_procedure_id,
            description=procedure.description,
            code_value=procedure.code_value,
            coding_scheme=procedure.coding_scheme,
            code_meaning=procedure.code_meaning,
            study_instance_uid=study_uid,
        )
        session.add(requested)
        session.flush()
        for step in procedure.steps:
            session.add(
                ScheduledStep(
                    procedure_fk=requested.id,
                    step_id=step.step_id,
                    station_ae_title=step.station_ae_title,
                    station_name=step.station_name,
                    modality=step.modality,
                    start_date=step.start.date() if step.start else None,
                    start_time=step.start.time().replace(tzinfo=None) if step.start else None,
                    description=step.description,
                    performing_physician_name=step.performing_physician,
                    status=StepStatus.SCHEDULED,
                )
            )
    session.flush()


def _set_step_status(session: Session, row: ImagingOrder, status: StepStatus) -> None:
    procedures = select(RequestedProcedure.id).where(RequestedProcedure.order_fk == row.id)
    for step in session.scalars(
        select(ScheduledStep).where(ScheduledStep.procedure_fk.in_(procedures))
    ):
        step.status = status


def _audit(
    session: Session,
    origin: Origin,
    patient: Patient | None,
    action: str,
    detail: str,
) -> None:
    record(
        session,
        AuditRecord(
            AuditEventId.ORDER_RECORD,
            action,
            origin,
            patient_id=patient.patient_id if patient else None,
            detail=detail,
        ),
    )


def summary(session: Session, row: ImagingOrder) -> OrderSummary:
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
        patient=PatientIdentity(patient.patient_id, patient.issuer_of_patient_id),
        status=OrderStatus(row.status),
        priority=Priority(row.priority),
        placer_order_number=row.placer_order_number,
        study_instance_uids=tuple(p.study_instance_uid for p in procedures),
        step_ids=tuple(steps),
    )


class OrderService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def place(self, order: OrderRequest, origin: Origin) -> OrderSummary:
        with self._database.unit_of_work() as session:
            return summary(session, place_order(session, order, origin))

    def change(self, order: OrderRequest, origin: Origin) -> OrderSummary:
        with self._database.unit_of_work() as session:
            return summary(session, change_order(session, order, origin))

    def cancel(
        self, accession_number: str, origin: Origin, reason: str | None = None
    ) -> OrderSummary:
        with self._database.unit_of_work() as session:
            return summary(session, cancel_order(session, accession_number, origin, reason=reason))

    def get(self, accession_number: str) -> OrderSummary:
        with self._database.reading() as session:
            row = session.scalar(
                select(ImagingOrder).where(
                    ImagingOrder.accession_number == accession_number.strip()
                )
            )
            if row is None:
                raise UnknownOrderError(f"no order with accession number {accession_number}")
            return summary(session, row)

    # -- Orders entered in pedipacs (the orders page, /api/orders) -------------------------
    # Everything below was added for sites without an HIS feed: registering the patient with
    # the order in one transaction (the HL7 door follows the same rule), accession numbers
    # made up when none is given, and the read-only listing and details the page shows.

    def place_for(
        self, registration: PatientRegistration | None, order: OrderRequest, origin: Origin
    ) -> OrderSummary:
        """Register the patient (when given) and place the order, both or neither."""
        with self._database.unit_of_work() as session:
            return summary(session, place_order_for(session, registration, order, origin))

    def change_for(
        self, registration: PatientRegistration | None, order: OrderRequest, origin: Origin
    ) -> OrderSummary:
        """Register the patient (when given) and replace the order's details, both or neither."""
        with self._database.unit_of_work() as session:
            return summary(session, change_order_for(session, registration, order, origin))

    def search(self, criteria: OrderSearch, origin: Origin) -> OrderPage:
        """One page of orders with their patients, audited as a query (110112)."""
        with self._database.reading() as session:
            page = search_orders(session, criteria, origin.patient_scope)
        patients = {item.patient.identifier for item in page.items}
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    AuditEventId.QUERY,
                    "E",
                    origin,
                    # One patient's orders name them; a list of several names none.
                    patient_id=patients.pop() if len(patients) == 1 else None,
                    detail=f"orders: {criteria.describe()}; {len(page.items)} shown",
                ),
            )
        return page

    def detail(self, accession_number: str, origin: Origin) -> OrderDetail:
        """One order with its patient, procedures and steps, audited as read (110109 R)."""
        with self._database.reading() as session:
            found = order_detail(session, accession_number)
        if not origin.sees(found.request.patient.identifier):
            # Not disclosed: an order of a patient outside one's care is as good as unknown.
            raise UnknownOrderError(f"no order with accession number {accession_number}")
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    AuditEventId.ORDER_RECORD,
                    "R",
                    origin,
                    patient_id=found.request.patient.identifier,
                    detail=f"order {found.request.accession_number} read",
                ),
            )
        return found


ACCESSION_PREFIX = "PP"  # pedipacs made this number up (orders placed without one)
ACCESSION_ATTEMPTS = 20
# Orders not over yet: scheduled, arrived, in progress, or completed but not yet reported.
OPEN = frozenset(OrderStatus) - CLOSED
MAX_PAGE = 200
_PRIORITY_RANK = {Priority.STAT: 0, Priority.ASAP: 1, Priority.ROUTINE: 2}


def new_accession_number(session: Session) -> str:
    """A free accession number: `PP`, the day (YYMMDD) and six random digits, 14 characters
    a modality keypad can type; random rather than counted, so two nodes need no shared
    counter (a clash is looked for and drawn again)."""
    for _ in range(ACCESSION_ATTEMPTS):
        candidate = f"{ACCESSION_PREFIX}{date.today():%y%m%d}{secrets.randbelow(10**6):06d}"
        taken = session.scalar(
            select(ImagingOrder.id).where(ImagingOrder.accession_number == candidate)
        )
        if taken is None:
            return candidate
    raise Conflict("no free accession number was found; give one")


def place_order_for(
    session: Session,
    registration: PatientRegistration | None,
    order: OrderRequest,
    origin: Origin,
) -> ImagingOrder:
    """Register (or update) the patient, then place the order for them, in the caller's
    transaction: both apply or neither (an HL7 ORM with its PID, the orders page).

    Without an accession number the order gets a new one; a procedure without an ID gets the
    accession number's, a step without one its procedure's (as the HL7 door does)."""
    _register_for(session, registration, order, origin)
    accession = order.accession_number.strip() or new_accession_number(session)
    order = _with_identifiers(replace(order, accession_number=accession))
    return place_order(session, order, origin)


def change_order_for(
    session: Session,
    registration: PatientRegistration | None,
    order: OrderRequest,
    origin: Origin,
) -> ImagingOrder:
    """Register (or update) the patient when given, then replace the order's details.

    A procedure the change names by its ID without a Study Instance UID keeps the UID it has:
    the modality may have taken it from the worklist already."""
    _register_for(session, registration, order, origin)
    order = _with_identifiers(order)
    kept = {
        procedure_id: uid
        for procedure_id, uid in session.execute(
            select(RequestedProcedure.requested_procedure_id, RequestedProcedure.study_instance_uid)
            .join(ImagingOrder, ImagingOrder.id == RequestedProcedure.order_fk)
            .where(ImagingOrder.accession_number == order.accession_number.strip())
        )
    }
    procedures = tuple(
        replace(p, study_instance_uid=kept.get(p.requested_procedure_id))
        if p.study_instance_uid is None
        else p
        for p in order.procedures
    )
    return change_order(session, replace(order, procedures=procedures), origin)


def _register_for(
    session: Session,
    registration: PatientRegistration | None,
    order: OrderRequest,
    origin: Origin,
) -> None:
    if registration is None:
        return
    named = (order.patient.identifier, order.patient.issuer)
    if named not in {(i.identifier, i.issuer) for i in registration.identifiers}:
        raise InvalidInput(
            f"the order is for patient {order.patient}, not for the patient registered with it "
            f"({registration.primary})"
        )
    register_patient(session, registration, origin)


def _with_identifiers(order: OrderRequest) -> OrderRequest:
    """IDs filled in where none was given: the accession number for a lone procedure (with
    -1, -2, ... when there are several), the procedure's ID for its steps likewise."""
    procedures = []
    for number, procedure in enumerate(order.procedures, start=1):
        procedure_id = procedure.requested_procedure_id.strip() or _numbered(
            order.accession_number.strip(), number, len(order.procedures)
        )
        count = len(procedure.steps)
        steps = tuple(
            replace(step, step_id=step.step_id.strip() or _numbered(procedure_id, index, count))
            for index, step in enumerate(procedure.steps, start=1)
        )
        procedures.append(replace(procedure, requested_procedure_id=procedure_id, steps=steps))
    return replace(order, procedures=tuple(procedures))


def _numbered(base: str, number: int, count: int) -> str:
    return base if count == 1 else f"{base}-{number}"


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
        statement = statement.where(_patient_matches(criteria.patient.strip()))
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


def _patient_matches(text: str) -> ColumnElement[bool]:
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
        patient=PatientIdentity(patient.patient_id, patient.issuer_of_patient_id),
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


def order_detail(session: Session, accession_number: str) -> OrderDetail:
    row = session.scalar(
        select(ImagingOrder).where(ImagingOrder.accession_number == accession_number.strip())
    )
    if row is None:
        raise UnknownOrderError(f"no order with accession number {accession_number}")
    patient = session.get(Patient, row.patient_fk)
    assert patient is not None
    identity = PatientIdentity(patient.patient_id, patient.issuer_of_patient_id)
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
    mother = (
        PatientIdentity(patient.mother_identifier, patient.mother_issuer or "")
        if patient.mother_identifier
        else None
    )
    registration = PatientRegistration(
        identifiers=(identity,),
        name=patient.patient_name,
        birth_date=patient.patient_birth_date,
        birth_time=patient.patient_birth_time,
        sex=patient.patient_sex,
        mother=mother,
        multiple_birth=patient.multiple_birth,
        birth_order=patient.birth_order,
        is_temporary=bool(patient.is_temporary),
    )
    return OrderDetail(
        request=request,
        status=OrderStatus(row.status),
        patient=registration,
        step_statuses=tuple(statuses),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive UTC, PostgreSQL aware: aware for both."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
