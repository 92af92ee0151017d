"""Modality Performed Procedure Steps (MPPS, PS3.4 Annex F): what a modality reports it is
doing and has done, kept as received (DICOM JSON), with the scheduled steps and orders it names
following it.

The state machine of PS3.4 F.7: a step is created IN PROGRESS (N-CREATE); while it is IN
PROGRESS its attributes may be changed (N-SET) and it may be ended COMPLETED or DISCONTINUED;
once ended it may no longer be updated. Each change, its audit record and the order and step
statuses it moves are written in one transaction.

The DIMSE door (`dimse/mpps.py`) turns the request into DICOM JSON and its errors into
statuses; this module speaks no protocol. The attribute rules it applies (PS3.4 Table F.7.2-1)
are `ris/performed_attributes.py`'s. As in `ris/orders.py`, the functions taking a
`Session` work in the caller's transaction and `PerformedStepService` gives them their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID, generate_uid
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    ImagingOrder,
    Patient,
    PerformedStep,
    RequestedProcedure,
    ScheduledStep,
)
from pedipacs.errors import Conflict, InvalidUidError, NotFound, StorageUnavailable
from pedipacs.model.origin import Origin
from pedipacs.model.ris import OrderStatus, StepStatus
from pedipacs.ris.performed_attributes import (
    FINAL,
    SCHEDULED_STEPS,
    STATUS,
    JsonObject,
    PerformedProcedureStepStatus,
    attribute_text,
    attribute_values,
    check_created,
    check_final,
    check_modifications,
    merged_attributes,
)
from pedipacs.security.audit import AuditEventId, AuditRecord, record

# -- errors -------------------------------------------------------------------------------------


class PerformedStepExistsError(Conflict):
    """A performed procedure step with that SOP Instance UID was created already."""


class UnknownPerformedStepError(NotFound):
    """No performed procedure step has that SOP Instance UID."""


class PerformedStepEndedError(Conflict):
    """The step is COMPLETED or DISCONTINUED: it may no longer be updated (PS3.4 F.7.2.2.3)."""


class InvalidSopInstanceUidError(InvalidUidError):
    """The SOP Instance UID the modality chose is not a valid UID."""


# -- which orders and scheduled steps a performed step names ------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduledReference:
    """One item of the Scheduled Step Attributes Sequence."""

    study_instance_uid: str | None
    accession_number: str | None
    requested_procedure_id: str | None
    scheduled_procedure_step_id: str | None


def scheduled_references(attributes: Mapping[str, Any]) -> list[ScheduledReference]:
    return [
        ScheduledReference(
            study_instance_uid=attribute_text(item, "StudyInstanceUID"),
            accession_number=attribute_text(item, "AccessionNumber"),
            requested_procedure_id=attribute_text(item, "RequestedProcedureID"),
            scheduled_procedure_step_id=attribute_text(item, "ScheduledProcedureStepID"),
        )
        for item in attribute_values(attributes, SCHEDULED_STEPS) or []
    ]


@dataclass
class _Linked:
    orders: dict[int, ImagingOrder]
    steps: dict[int, ScheduledStep]


def _procedures(session: Session, reference: ScheduledReference) -> list[RequestedProcedure]:
    """The accession number names the order (it is what a technologist types for an unscheduled
    exam); the Study Instance UID or the Requested Procedure ID picks the procedure within it.
    Without a known accession number, the Study Instance UID from the worklist decides."""
    by_study = None
    if reference.study_instance_uid:
        by_study = session.scalar(
            select(RequestedProcedure).where(
                RequestedProcedure.study_instance_uid == reference.study_instance_uid
            )
        )
    order_id = None
    if reference.accession_number:
        order_id = session.scalar(
            select(ImagingOrder.id).where(
                ImagingOrder.accession_number == reference.accession_number
            )
        )
    if order_id is None:
        return [by_study] if by_study is not None else []
    if by_study is not None and by_study.order_fk == order_id:
        return [by_study]
    procedures = list(
        session.scalars(
            select(RequestedProcedure)
            .where(RequestedProcedure.order_fk == order_id)
            .order_by(RequestedProcedure.id)
        )
    )
    named = [p for p in procedures if p.requested_procedure_id == reference.requested_procedure_id]
    return named or procedures


def _link(
    session: Session, references: Iterable[ScheduledReference], *, lock: bool = True
) -> _Linked:
    """The orders and steps the references name. An item naming no step (or an unknown one)
    stands for every step of the procedures it names. With `lock` the orders are locked until
    commit, so two modalities reporting on one order apply one after the other."""
    linked = _Linked({}, {})
    for reference in references:
        procedures = _procedures(session, reference)
        if not procedures:
            continue
        statement = select(ImagingOrder).where(ImagingOrder.id == procedures[0].order_fk)
        order = session.scalar(statement.with_for_update() if lock else statement)
        assert order is not None  # requested_procedure.order_fk is a foreign key
        linked.orders.setdefault(order.id, order)
        steps = list(
            session.scalars(
                select(ScheduledStep)
                .where(ScheduledStep.procedure_fk.in_([p.id for p in procedures]))
                .order_by(ScheduledStep.id)
            )
        )
        wanted = reference.scheduled_procedure_step_id
        named = [s for s in steps if s.step_id == wanted]
        for step in named or steps:
            linked.steps.setdefault(step.id, step)
    return linked


# -- how steps and orders follow ----------------------------------------------------------------

_STEP_FOLLOWING = {
    PerformedProcedureStepStatus.IN_PROGRESS: StepStatus.STARTED,
    PerformedProcedureStepStatus.COMPLETED: StepStatus.COMPLETED,
    PerformedProcedureStepStatus.DISCONTINUED: StepStatus.DISCONTINUED,
}
# A cancelled step stays cancelled (someone withdrew it: a person decides), and a completed one
# stays completed (a repeat that is discontinued does not undo work already done).
_STEP_KEPT = frozenset({StepStatus.CANCELLED, StepStatus.COMPLETED})
# Orders an MPPS no longer moves; a discontinued order is not among them: a modality that
# starts again after discontinuing (a new MPPS) takes it back to in progress.
_ORDER_KEPT = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.REPORTED})
_TO_PERFORM = frozenset({StepStatus.SCHEDULED, StepStatus.ARRIVED, StepStatus.READY})


def order_status_after(current: OrderStatus, steps: Iterable[StepStatus]) -> OrderStatus:
    """An order's status once its steps have moved.

    In progress while a step is started; completed when nothing is left to perform and some
    step was completed; discontinued when nothing is left and none was completed; unchanged
    while steps remain to be performed (they stay on the worklist).

    >>> order_status_after(OrderStatus.SCHEDULED, [StepStatus.STARTED])
    <OrderStatus.IN_PROGRESS: 'in-progress'>
    >>> order_status_after(OrderStatus.IN_PROGRESS, [StepStatus.COMPLETED, StepStatus.SCHEDULED])
    <OrderStatus.IN_PROGRESS: 'in-progress'>
    >>> order_status_after(OrderStatus.IN_PROGRESS, [StepStatus.COMPLETED, StepStatus.DISCONTINUED])
    <OrderStatus.COMPLETED: 'completed'>
    >>> order_status_after(OrderStatus.IN_PROGRESS, [StepStatus.DISCONTINUED])
    <OrderStatus.DISCONTINUED: 'discontinued'>
    >>> order_status_after(OrderStatus.CANCELLED, [StepStatus.STARTED])
    <OrderStatus.CANCELLED: 'cancelled'>
    """
    if current in _ORDER_KEPT:
        return current
    statuses = set(steps)
    if StepStatus.STARTED in statuses:
        return OrderStatus.IN_PROGRESS
    if statuses & _TO_PERFORM:
        return current
    if StepStatus.COMPLETED in statuses:
        return OrderStatus.COMPLETED
    if StepStatus.DISCONTINUED in statuses:
        return OrderStatus.DISCONTINUED
    return current


def _follow(session: Session, linked: _Linked, status: PerformedProcedureStepStatus) -> list[str]:
    """Move the linked steps, then their orders; what changed, for the audit detail."""
    changes = []
    for step in linked.steps.values():
        if step.status not in _STEP_KEPT and step.status != _STEP_FOLLOWING[status]:
            step.status = _STEP_FOLLOWING[status]
            changes.append(f"step {step.step_id} {step.status}")
    session.flush()
    for order in linked.orders.values():
        procedures = select(RequestedProcedure.id).where(RequestedProcedure.order_fk == order.id)
        steps = session.scalars(
            select(ScheduledStep.status).where(ScheduledStep.procedure_fk.in_(procedures))
        )
        after = order_status_after(OrderStatus(order.status), (StepStatus(s) for s in steps))
        if after != order.status:
            order.status = after
            changes.append(f"order {order.accession_number} {after}")
    return changes


# -- the operations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerformedStepSummary:
    """A performed procedure step as it stands, with the orders and steps it follows (none when
    it was unscheduled or names nothing pedipacs knows)."""

    sop_instance_uid: str
    status: PerformedProcedureStepStatus
    study_instance_uid: str | None
    modality: str | None
    accession_numbers: tuple[str, ...]
    step_ids: tuple[str, ...]


def create_performed_step(
    session: Session, sop_instance_uid: str | None, attributes: Mapping[str, Any], origin: Origin
) -> PerformedStepSummary:
    """N-CREATE: a new step IN PROGRESS; its scheduled steps are started and their orders in
    progress. `sop_instance_uid` None: pedipacs chooses one (the door returns it)."""
    uid = sop_instance_uid or generate_uid()
    if not UID(uid).is_valid:
        raise InvalidSopInstanceUidError(f"SOP Instance UID {uid!r} is not a valid UID")
    check_created(attributes)
    if session.scalar(select(PerformedStep.id).where(PerformedStep.sop_instance_uid == uid)):
        raise PerformedStepExistsError(f"performed procedure step {uid} exists already")
    kept = merged_attributes({}, attributes)
    references = scheduled_references(kept)
    linked = _link(session, references)
    step_ids = [step.id for step in linked.steps.values()]
    row = PerformedStep(
        sop_instance_uid=uid,
        status=PerformedProcedureStepStatus.IN_PROGRESS,
        calling_ae_title=(origin.remote_ae or "")[:16],
        order_fk=next(iter(linked.orders), None),
        scheduled_step_fk=step_ids[0] if len(step_ids) == 1 else None,
        study_instance_uid=references[0].study_instance_uid if references else None,
        modality=attribute_text(kept, "Modality"),
        attributes=_json_text(kept),
    )
    session.add(row)
    session.flush()
    changes = _follow(session, linked, PerformedProcedureStepStatus.IN_PROGRESS)
    _audit(session, origin, "C", row, kept, linked, changes)
    return _summary(row, linked)


def update_performed_step(
    session: Session, sop_instance_uid: str, modifications: Mapping[str, Any], origin: Origin
) -> PerformedStepSummary:
    """N-SET: merge the modifications; COMPLETED or DISCONTINUED ends the step and moves its
    scheduled steps and orders. Only a step IN PROGRESS may be updated."""
    row = _performed_row(session, sop_instance_uid, lock=True)
    if row.status != PerformedProcedureStepStatus.IN_PROGRESS:
        raise PerformedStepEndedError("Performed Procedure Step Object may no longer be updated")
    stored = json.loads(row.attributes)
    check_modifications(stored, modifications)
    merged = merged_attributes(stored, modifications)
    status = PerformedProcedureStepStatus(attribute_text(merged, STATUS) or row.status)
    if status in FINAL:
        check_final(merged)
    # The schedule was fixed by the N-CREATE; it is resolved again so that an order changed in
    # between (steps scheduled anew) is still followed.
    linked = _link(session, scheduled_references(merged), lock=status in FINAL)
    row.status = status
    row.attributes = _json_text(merged)
    changes = _follow(session, linked, status) if status in FINAL else []
    _audit(session, origin, "U", row, merged, linked, changes)
    return _summary(row, linked)


def _performed_row(session: Session, sop_instance_uid: str, *, lock: bool = False) -> PerformedStep:
    """The performed step with that SOP Instance UID (locked until commit with `lock`)."""
    statement = select(PerformedStep).where(PerformedStep.sop_instance_uid == sop_instance_uid)
    row = session.scalar(statement.with_for_update() if lock else statement)
    if row is None:
        raise UnknownPerformedStepError(f"no performed procedure step {sop_instance_uid}")
    return row


def _json_text(attributes: Mapping[str, Any]) -> str:
    return json.dumps(attributes, ensure_ascii=False, separators=(",", ":"))


def _summary(row: PerformedStep, linked: _Linked) -> PerformedStepSummary:
    return PerformedStepSummary(
        sop_instance_uid=row.sop_instance_uid,
        status=PerformedProcedureStepStatus(row.status),
        study_instance_uid=row.study_instance_uid,
        modality=row.modality,
        accession_numbers=tuple(order.accession_number for order in linked.orders.values()),
        step_ids=tuple(step.step_id for step in linked.steps.values()),
    )


def _audit(
    session: Session,
    origin: Origin,
    action: str,
    row: PerformedStep,
    attributes: Mapping[str, Any],
    linked: _Linked,
    changes: list[str],
) -> None:
    patient_id = attribute_text(attributes, "PatientID")
    if linked.orders:
        patient = session.get(Patient, next(iter(linked.orders.values())).patient_fk)
        patient_id = patient.patient_id if patient is not None else patient_id
    follows = ", ".join(changes) if changes else "no order or step status changed"
    if not linked.orders:
        follows = "unscheduled: no order matches"
    record(
        session,
        AuditRecord(
            AuditEventId.PROCEDURE_RECORD,
            action,
            origin,
            patient_id=patient_id,
            study_instance_uid=row.study_instance_uid,
            detail=f"MPPS {row.sop_instance_uid} {row.status} ({row.modality or '?'} from "
            f"{origin.who}): {follows}",
        ),
    )


class PerformedStepService:
    """MPPS N-CREATE and N-SET, each in a transaction of its own."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def create(
        self, sop_instance_uid: str | None, attributes: Mapping[str, Any], origin: Origin
    ) -> PerformedStepSummary:
        try:
            return self._write(
                lambda session: create_performed_step(session, sop_instance_uid, attributes, origin)
            )
        except IntegrityError as error:
            # Two modalities raced to create the same UID; the unique constraint chose one.
            raise PerformedStepExistsError(
                f"performed procedure step {sop_instance_uid or '(UID chosen by pedipacs)'} "
                "exists already"
            ) from error

    def update(
        self, sop_instance_uid: str, modifications: Mapping[str, Any], origin: Origin
    ) -> PerformedStepSummary:
        return self._write(
            lambda session: update_performed_step(session, sop_instance_uid, modifications, origin)
        )

    def get(self, sop_instance_uid: str) -> PerformedStepSummary:
        with self._database.reading() as session:
            row = _performed_row(session, sop_instance_uid)
            references = scheduled_references(json.loads(row.attributes))
            linked = _link(session, references, lock=False)
            return _summary(row, linked)

    def attributes(self, sop_instance_uid: str) -> JsonObject:
        """Every attribute received so far, as DICOM JSON (what an N-GET would answer)."""
        with self._database.reading() as session:
            loaded: JsonObject = json.loads(_performed_row(session, sop_instance_uid).attributes)
            return loaded

    def _write(self, work: Callable[[Session], PerformedStepSummary]) -> PerformedStepSummary:
        try:
            summary: PerformedStepSummary = self._database.transaction(work)
        except OperationalError as error:
            raise StorageUnavailable(
                f"the index database cannot be written: {error.orig}"
            ) from error
        return summary
