"""Imaging orders: placed, changed, cancelled; each with its requested procedures (and the
Study Instance UID the modality must use) and scheduled procedure steps (worklist items).

As in `ris/patients.py`, the functions taking a `Session` work in the caller's transaction;
`OrderService` gives them transactions of their own. Reading orders (the orders list and one
order's details) is `ris/order_views.py`'s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, date

from pydicom.uid import generate_uid
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    ImagingOrder,
    Patient,
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
    StepStatus,
)
from pedipacs.model.values import pn_search_form
from pedipacs.ris.order_views import (
    OrderDetail,
    OrderPage,
    OrderSearch,
    order_detail,
    order_summary,
    search_orders,
)
from pedipacs.ris.patients import (
    UnknownPatientError,
    check_identity,
    find_patient,
    register_patient,
)
from pedipacs.ris.reconcile import reconcile_order
from pedipacs.security.audit import AuditEventId, AuditRecord, record, record_query

MAX_ACCESSION = 16  # VR SH
MAX_SHORT_ID = 16  # Requested Procedure ID, Scheduled Procedure Step ID (SH)
MAX_AE_TITLE = 16
UID_LENGTH = 64
# Orders in these states are over: they are neither changed nor cancelled again.
CLOSED = frozenset({OrderStatus.CANCELLED, OrderStatus.DISCONTINUED, OrderStatus.REPORTED})
# Orders not over yet: scheduled, arrived, in progress, or completed but not yet reported.
OPEN = frozenset(OrderStatus) - CLOSED
ACCESSION_PREFIX = "PP"  # pedipacs made this number up (orders placed without one)
ACCESSION_ATTEMPTS = 20


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
    if _is_accession_taken(session, accession):
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
    _audit(session, origin, patient.patient_id, "C", f"order {accession} placed ({row.priority})")
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
    _audit(session, origin, patient.patient_id, "U", f"order {row.accession_number} changed")
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
    because = f": {reason}" if reason else ""
    detail = f"order {row.accession_number} cancelled{because}"
    _audit(session, origin, patient.patient_id if patient else None, "D", detail)
    return row


def _order_row(session: Session, accession_number: str, *, lock: bool = False) -> ImagingOrder:
    """The order with that accession number (locked until commit with `lock`)."""
    statement = select(ImagingOrder).where(
        ImagingOrder.accession_number == accession_number.strip()
    )
    row = session.scalar(statement.with_for_update() if lock else statement)
    if row is None:
        raise UnknownOrderError(f"no order with accession number {accession_number}")
    return row


def _open_order(session: Session, accession_number: str) -> ImagingOrder:
    row = _order_row(session, accession_number, lock=True)
    if row.status in CLOSED:
        raise OrderClosedError(f"order {accession_number} is {row.status}; it cannot change")
    return row


def _is_accession_taken(session: Session, accession_number: str) -> bool:
    taken = select(ImagingOrder.id).where(ImagingOrder.accession_number == accession_number)
    return session.scalar(taken) is not None


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
    row.patient_location = order.patient_location.upper() if order.patient_location else None
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


# The order statuses the hospital may report (HL7 ORC-1 SC with ORC-5), and what each does.
REPORTABLE_STATUSES = frozenset(
    {OrderStatus.SCHEDULED, OrderStatus.IN_PROGRESS, OrderStatus.COMPLETED,
     OrderStatus.DISCONTINUED, OrderStatus.CANCELLED}
)  # fmt: skip
_STEP_STATUS_FOR_ORDER = {
    OrderStatus.COMPLETED: StepStatus.COMPLETED,
    OrderStatus.DISCONTINUED: StepStatus.DISCONTINUED,
}
_STILL_TO_PERFORM = (StepStatus.SCHEDULED, StepStatus.ARRIVED, StepStatus.READY, StepStatus.STARTED)


def record_order_status(
    session: Session, accession_number: str, status: OrderStatus, origin: Origin
) -> str:
    """The hospital reports an order's status (HL7 ORC-1 SC): in progress, completed or
    discontinued (the steps still to perform leave the worklist), cancelled; `scheduled` changes
    nothing pedipacs knows better (images or MPPS may have moved it on). Audited (110109)."""
    if status not in REPORTABLE_STATUSES:
        raise InvalidInput(f"order status {status} cannot be reported by the hospital")
    if status is OrderStatus.CANCELLED:
        cancel_order(session, accession_number, origin, reason="reported by the hospital")
        return "cancelled"
    row = _open_order(session, accession_number)
    before = OrderStatus(row.status)
    if status is OrderStatus.SCHEDULED or (
        status is OrderStatus.IN_PROGRESS and before is not OrderStatus.SCHEDULED
        and before is not OrderStatus.ARRIVED
    ):  # fmt: skip
        return f"{before} (unchanged)"
    row.status = status
    step_status = _STEP_STATUS_FOR_ORDER.get(status)
    if step_status is not None:
        procedures = select(RequestedProcedure.id).where(RequestedProcedure.order_fk == row.id)
        for step in session.scalars(
            select(ScheduledStep).where(
                ScheduledStep.procedure_fk.in_(procedures),
                ScheduledStep.status.in_([str(s) for s in _STILL_TO_PERFORM]),
            )
        ):
            step.status = step_status
    patient = session.get(Patient, row.patient_fk)
    detail = f"order {row.accession_number} {before} -> {status} (reported by the hospital)"
    _audit(session, origin, patient.patient_id if patient else None, "U", detail)
    return str(status)


def _set_step_status(session: Session, row: ImagingOrder, status: StepStatus) -> None:
    procedures = select(RequestedProcedure.id).where(RequestedProcedure.order_fk == row.id)
    for step in session.scalars(
        select(ScheduledStep).where(ScheduledStep.procedure_fk.in_(procedures))
    ):
        step.status = status


def _audit(
    session: Session, origin: Origin, patient_id: str | None, action: str, detail: str
) -> None:
    """An Order Record event (110109) for the order's patient."""
    record(
        session,
        AuditRecord(
            AuditEventId.ORDER_RECORD, action, origin, patient_id=patient_id, detail=detail
        ),
    )


def new_accession_number(session: Session) -> str:
    """A free accession number: `PP`, the day (YYMMDD) and six random digits, 14 characters
    a modality keypad can type; random rather than counted, so two nodes need no shared
    counter (a clash is looked for and drawn again)."""
    for _ in range(ACCESSION_ATTEMPTS):
        candidate = f"{ACCESSION_PREFIX}{date.today():%y%m%d}{secrets.randbelow(10**6):06d}"
        if not _is_accession_taken(session, candidate):
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


class OrderService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def place(self, order: OrderRequest, origin: Origin) -> OrderSummary:
        with self._database.unit_of_work() as session:
            return order_summary(session, place_order(session, order, origin))

    def change(self, order: OrderRequest, origin: Origin) -> OrderSummary:
        with self._database.unit_of_work() as session:
            return order_summary(session, change_order(session, order, origin))

    def cancel(
        self, accession_number: str, origin: Origin, reason: str | None = None
    ) -> OrderSummary:
        with self._database.unit_of_work() as session:
            return order_summary(
                session, cancel_order(session, accession_number, origin, reason=reason)
            )

    def get(self, accession_number: str) -> OrderSummary:
        with self._database.reading() as session:
            return order_summary(session, _order_row(session, accession_number))

    # -- Orders entered in pedipacs (the orders page, /api/orders) -------------------------
    # Everything below was added for sites without an HIS feed: registering the patient with
    # the order in one transaction (the HL7 door follows the same rule), accession numbers
    # made up when none is given, and the read-only listing and details the page shows.

    def place_for(
        self, registration: PatientRegistration | None, order: OrderRequest, origin: Origin
    ) -> OrderSummary:
        """Register the patient (when given) and place the order, both or neither."""
        with self._database.unit_of_work() as session:
            return order_summary(session, place_order_for(session, registration, order, origin))

    def change_for(
        self, registration: PatientRegistration | None, order: OrderRequest, origin: Origin
    ) -> OrderSummary:
        """Register the patient (when given) and replace the order's details, both or neither."""
        with self._database.unit_of_work() as session:
            return order_summary(session, change_order_for(session, registration, order, origin))

    def search(self, criteria: OrderSearch, origin: Origin) -> OrderPage:
        """One page of orders with their patients, audited as a query (110112)."""
        with self._database.reading() as session:
            page = search_orders(session, criteria, origin.patient_scope)
        with self._database.unit_of_work() as session:
            record_query(
                session,
                origin,
                (item.patient.identifier for item in page.items),
                f"orders: {criteria.describe()}; {len(page.items)} shown",
            )
        return page

    def detail(self, accession_number: str, origin: Origin) -> OrderDetail:
        """One order with its patient, procedures and steps, audited as read (110109 R)."""
        with self._database.reading() as session:
            found = order_detail(session, _order_row(session, accession_number))
        if not origin.sees(found.request.patient.identifier):
            # Not disclosed: an order of a patient outside one's care is as good as unknown.
            raise UnknownOrderError(f"no order with accession number {accession_number}")
        with self._database.unit_of_work() as session:
            request = found.request
            _audit(session, origin, request.patient.identifier, "R",
                   f"order {request.accession_number} read")  # fmt: skip
        return found
