"""Imaging orders: placed, changed, cancelled; each with its requested procedures (and the
Study Instance UID the modality must use) and scheduled procedure steps (worklist items).

As in `ris/patients.py`, the functions taking a `Session` work in the caller's transaction;
`OrderService` gives them transactions of their own.
"""

from __future__ import annotations

from datetime import UTC

from pydicom.uid import generate_uid
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import ImagingOrder, Patient, RequestedProcedure, ScheduledStep
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.model.origin import Origin
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    OrderSummary,
    PatientIdentity,
    Priority,
    ProcedureRequest,
    StepStatus,
)
from pedipacs.model.values import pn_search_form
from pedipacs.ris.patients import UnknownPatientError, check_identity, find_patient
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
    return row


def change_order(session: Session, order: OrderRequest, origin: Origin) -> ImagingOrder:
    """Replace an open order's details and schedule (HL7 ORC-1 XO). Audited (110109)."""
    check_order(order)
    row = _open_order(session, order.accession_number)
    patient = _patient(session, order.patient)
    row.patient_fk = patient.id
    _apply(row, order)
    steps = (
        select(ScheduledStep.id)
        .join(RequestedProcedure, RequestedProcedure.id == ScheduledStep.procedure_fk)
        .where(RequestedProcedure.order_fk == row.id)
    )
    session.execute(delete(ScheduledStep).where(ScheduledStep.id.in_(steps)))
    session.execute(delete(RequestedProcedure).where(RequestedProcedure.order_fk == row.id))
    session.flush()
    _schedule(session, row, order.procedures)
    _audit(session, origin, patient, "U", f"order {row.accession_number} changed")
    return row


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
