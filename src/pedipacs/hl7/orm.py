"""Orders: ORM^O01 and OMI^O23, from ORC/OBR (with PID, PV1, TQ1, IPC, ZDS, OBX) to
`ris.orders` (place, change, cancel, status), the patient of the PID registered first, all in
one transaction.

Each ORC starts an order group. ORC-1 says what to do: NW place, XO change (the message carries
the whole new order), CA or DC cancel, SC report the order's status in ORC-5 (IP in progress,
CM completed, DC discontinued, CA cancelled; SC scheduled changes nothing). Groups with the
same accession number make one order; within it, groups (or IPC segments) with the same
requested procedure ID make one requested procedure, each group or IPC one scheduled procedure
step.

Fields read (the first non-empty one wins where several are named):

- accession number: IPC-1, else OBR-18, else the filler order number (ORC-3, OBR-3);
- requested procedure ID: IPC-2, OBR-19, else the accession number; scheduled procedure step
  ID: IPC-4, OBR-20, else the requested procedure ID;
- Study Instance UID: IPC-3, ZDS-1; made up when absent;
- requested procedure: OBR-4 (code^text^coding scheme), required for NW and XO;
- modality: IPC-5, OBR-24; station AE title: IPC-9, OBR-21; station name: IPC-7;
- scheduled start: TQ1-7, ORC-7.4, OBR-27.4, OBR-36, ORC-15;
- priority: ORC-7.6, OBR-27.6, TQ1-9, OBR-5 (S -> STAT, A -> ASAP; R, P, C, T and none ->
  ROUTINE);
- placer order number ORC-2 (OBR-2), filler order number ORC-3 (OBR-3), reason for study OBR-31
  (else OBR-13), referring physician ORC-12 (else OBR-16), ordering department ORC-17,
  order date ORC-9, patient class PV1-2, patient weight from an OBX body weight (LOINC
  29463-7, 3141-9, 8335-2, 8339-4, or named "weight"; kg, g or lb), cancel reason ORC-16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from pedipacs.hl7.adt import Work, registration_from_pid
from pedipacs.hl7.messages import (
    ErrorCode,
    Hl7ContentError,
    Location,
    Message,
    Segment,
)
from pedipacs.hl7.order_fields import (
    LONG,
    first_text,
    modality,
    patient_class,
    patient_weight,
    point_of_care,
    procedure_code,
    reason,
    referring_physician,
    short_id,
    study_instance_uid,
)
from pedipacs.hl7.values import checked_text, timestamp_from_dtm
from pedipacs.model.origin import Origin
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    PatientRegistration,
    Priority,
    ProcedureRequest,
    ScheduledStepRequest,
)
from pedipacs.ris.orders import (
    cancel_order,
    change_order_for,
    place_order_for,
    record_order_status,
)
from pedipacs.ris.patients import register_patient

PLACE, CHANGE, STATUS = "NW", "XO", "SC"
CANCEL = frozenset({"CA", "DC"})
ORDER_CONTROLS = frozenset({PLACE, CHANGE, STATUS, *CANCEL})
# ORC-5 (HL7 table 0038) of an ORC-1 SC: the status the hospital reports.
ORDER_STATUS_FROM_HL7 = {
    "SC": OrderStatus.SCHEDULED,
    "IP": OrderStatus.IN_PROGRESS,
    "CM": OrderStatus.COMPLETED,
    "DC": OrderStatus.DISCONTINUED,
    "CA": OrderStatus.CANCELLED,
}
PRIORITY_FROM_HL7 = {
    "S": Priority.STAT,
    "STAT": Priority.STAT,
    "A": Priority.ASAP,
    "ASAP": Priority.ASAP,
    "R": Priority.ROUTINE,
    "ROUTINE": Priority.ROUTINE,
    "P": Priority.ROUTINE,
    "C": Priority.ROUTINE,
    "T": Priority.ROUTINE,
}


def handle_orm_o01(message: Message, origin: Origin) -> Work:
    """ORM^O01: new, changed and cancelled orders (ORC-1 NW, XO, CA/DC)."""
    return _orders(message, origin)


def handle_omi_o23(message: Message, origin: Origin) -> Work:
    """OMI^O23: the same, with IPC segments naming the DICOM identifiers."""
    return _orders(message, origin)


@dataclass(frozen=True, slots=True)
class OrderAction:
    """What one order of the message asks for."""

    control: str  # NW, XO, CA, DC, SC
    accession_number: str
    order: OrderRequest | None = None  # for NW and XO
    reason: str | None = None  # for CA and DC (ORC-16)
    status: OrderStatus | None = None  # for SC (ORC-5)


def _orders(message: Message, origin: Origin) -> Work:
    registration, actions = actions_from_message(message)

    def apply(session: Session) -> str:
        done: list[str] = []
        pending = registration  # the PID's patient, registered with the first order for them
        for action in actions:
            if action.control == PLACE:
                assert action.order is not None
                place_order_for(session, pending, action.order, origin)
                pending = None
                done.append(f"order {action.accession_number} placed")
            elif action.control == CHANGE:
                assert action.order is not None
                change_order_for(session, pending, action.order, origin)
                pending = None
                done.append(f"order {action.accession_number} changed")
            elif action.control == STATUS:
                assert action.status is not None
                now = record_order_status(session, action.accession_number, action.status, origin)
                done.append(f"order {action.accession_number} {now}")
            else:
                cancel_order(session, action.accession_number, origin, reason=action.reason)
                done.append(f"order {action.accession_number} cancelled")
        if pending is not None:  # a message that only cancels still updates its patient
            register_patient(session, pending, origin)
        return "; ".join(done)

    return apply


@dataclass
class _Group:
    """An ORC and the segments of its order that follow it."""

    orc: Segment
    obr: Segment | None = None
    tq1: Segment | None = None
    zds: Segment | None = None
    ipcs: list[Segment] = field(default_factory=list)
    obxs: list[Segment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Step:
    """One scheduled step as a group (or one of its IPC segments) describes it."""

    group: _Group
    control: str
    accession_number: str
    procedure_id: str = ""
    step_id: str = ""
    study_instance_uid: str | None = None
    modality: str | None = None
    station_ae_title: str | None = None
    station_name: str | None = None


@dataclass
class _Structure:
    pid: Segment | None = None
    pv1: Segment | None = None
    obxs: list[Segment] = field(default_factory=list)  # before the first ORC
    groups: list[_Group] = field(default_factory=list)


def actions_from_message(
    message: Message,
) -> tuple[PatientRegistration | None, list[OrderAction]]:
    """The patient to register (None without PID) and what to do with each order."""
    structure = _structure(message)
    registration = registration_from_pid(structure.pid) if structure.pid else None
    steps = [step for group in structure.groups for step in _steps(group)]
    by_accession: dict[str, list[_Step]] = {}
    for step in steps:
        by_accession.setdefault(step.accession_number, []).append(step)
    actions = []
    for accession, its_steps in by_accession.items():
        controls = {step.control for step in its_steps}
        first = its_steps[0].group
        if len(controls) > 1:
            raise Hl7ContentError(
                f"ORC-1: order {accession} is given different order controls "
                f"({', '.join(sorted(controls))})",
                its_steps[-1].group.orc.location(1),
                ErrorCode.TABLE_VALUE_NOT_FOUND,
            )
        control = controls.pop()
        if control == STATUS:
            actions.append(OrderAction(control, accession, status=_reported_status(first.orc)))
            continue
        if control in CANCEL:
            reason = first.orc.value(16, 2) or first.orc.value(16)
            actions.append(
                OrderAction(
                    control,
                    accession,
                    reason=checked_text(reason, first.orc.location(16), "reason", LONG),
                )
            )
            continue
        if registration is None:
            raise Hl7ContentError(
                f"PID: the PID segment is missing; order {accession} needs its patient",
                Location("PID"),
                ErrorCode.SEGMENT_SEQUENCE_ERROR,
            )
        order = _order(accession, its_steps, registration, structure)
        actions.append(OrderAction(control, accession, order=order))
    return registration, actions


def _structure(message: Message) -> _Structure:
    structure = _Structure()
    for segment in message.segments[1:]:
        name = segment.name
        if name == "ORC":
            structure.groups.append(_Group(segment))
        elif name == "PID":
            if structure.pid is not None or structure.groups:
                raise Hl7ContentError(
                    "PID: one PID segment, before the first ORC",
                    Location("PID", segment.sequence),
                    ErrorCode.SEGMENT_SEQUENCE_ERROR,
                )
            structure.pid = segment
        elif name == "PV1":
            structure.pv1 = structure.pv1 or segment
        elif not structure.groups:
            if name in ("OBR", "TQ1", "IPC", "ZDS"):
                raise Hl7ContentError(
                    f"{name}: the {name} segment comes before any ORC",
                    Location(name, segment.sequence),
                    ErrorCode.SEGMENT_SEQUENCE_ERROR,
                )
            if name == "OBX":
                structure.obxs.append(segment)
        else:
            _add_to_group(structure.groups[-1], segment)
    if not structure.groups:
        raise Hl7ContentError(
            "ORC: the message holds no ORC segment",
            Location("ORC"),
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    return structure


def _add_to_group(group: _Group, segment: Segment) -> None:
    name = segment.name
    if name == "OBR":
        if group.obr is not None:
            raise Hl7ContentError(
                "OBR: one OBR segment per ORC",
                Location("OBR", segment.sequence),
                ErrorCode.SEGMENT_SEQUENCE_ERROR,
            )
        group.obr = segment
    elif name == "TQ1":
        group.tq1 = group.tq1 or segment
    elif name == "ZDS":
        group.zds = group.zds or segment
    elif name == "IPC":
        group.ipcs.append(segment)
    elif name == "OBX":
        group.obxs.append(segment)


def _reported_status(orc: Segment) -> OrderStatus:
    """ORC-5 of an ORC-1 SC: the order status the hospital reports."""
    value = orc.value(5).upper()
    if not value:
        raise Hl7ContentError(
            "ORC-5 is empty: ORC-1 SC needs the order status",
            orc.location(5),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    if value not in ORDER_STATUS_FROM_HL7:
        raise Hl7ContentError(
            f"ORC-5: order status {value[:8]!r} is not supported "
            f"({', '.join(ORDER_STATUS_FROM_HL7)})",
            orc.location(5),
            ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    return ORDER_STATUS_FROM_HL7[value]


def _steps(group: _Group) -> list[_Step]:
    orc, obr = group.orc, group.obr
    control = orc.value(1).upper()
    if control not in ORDER_CONTROLS:
        raise Hl7ContentError(
            f"ORC-1: order control {control[:8]!r} is not supported (NW, XO, CA, DC, SC)"
            if control
            else "ORC-1 is empty: the order control code is required",
            orc.location(1),
            ErrorCode.TABLE_VALUE_NOT_FOUND if control else ErrorCode.REQUIRED_FIELD_MISSING,
        )
    if control in (PLACE, CHANGE) and obr is None:
        raise Hl7ContentError(
            f"OBR: the OBR segment is missing; ORC-1 {control} needs it",
            Location("OBR", orc.sequence),
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    if group.ipcs:
        return [_step_from_ipc(group, control, ipc) for ipc in group.ipcs]
    accession = _accession_from_order(orc, obr)
    if obr is None:
        return [_Step(group, control, accession)]
    procedure_id = short_id(obr, 19, "requested procedure ID") or accession
    return [
        _Step(
            group,
            control,
            accession,
            procedure_id=procedure_id,
            step_id=short_id(obr, 20, "scheduled procedure step ID") or procedure_id,
            study_instance_uid=study_instance_uid(group.zds, 1) if group.zds else None,
            modality=modality(obr, 24),
            station_ae_title=short_id(obr, 21, "scheduled station AE title"),
        )
    ]


def _step_from_ipc(group: _Group, control: str, ipc: Segment) -> _Step:
    accession = short_id(ipc, 1, "accession number")
    if accession is None:
        raise Hl7ContentError(
            "IPC-1 is empty: the accession number is required",
            ipc.location(1),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    procedure_id = short_id(ipc, 2, "requested procedure ID") or accession
    return _Step(
        group,
        control,
        accession,
        procedure_id=procedure_id,
        step_id=short_id(ipc, 4, "scheduled procedure step ID") or procedure_id,
        study_instance_uid=study_instance_uid(ipc, 3),
        modality=modality(ipc, 5),
        station_ae_title=short_id(ipc, 9, "scheduled station AE title"),
        station_name=short_id(ipc, 7, "scheduled station name"),
    )


def _accession_from_order(orc: Segment, obr: Segment | None) -> str:
    for segment, number in ((obr, 18), (orc, 3), (obr, 3)):
        if segment is not None and (value := short_id(segment, number, "accession number")):
            return value
    location = obr.location(18) if obr is not None else orc.location(3)
    raise Hl7ContentError(
        f"{location} is empty: the accession number (OBR-18, or a filler order number) is required",
        location,
        ErrorCode.REQUIRED_FIELD_MISSING,
    )


def _order(
    accession: str, steps: list[_Step], registration: PatientRegistration, structure: _Structure
) -> OrderRequest:
    group = steps[0].group
    orc, obr = group.orc, group.obr
    assert obr is not None
    ordered = timestamp_from_dtm(orc.value(9), orc.location(9, 1), "order date")
    return OrderRequest(
        patient=registration.primary,
        accession_number=accession,
        priority=_priority(group),
        placer_order_number=first_text(((orc, 2), (obr, 2)), "placer order number", LONG),
        filler_order_number=first_text(((orc, 3), (obr, 3)), "filler order number", LONG),
        reason=reason(obr),
        referring_physician=referring_physician(orc, obr),
        ordering_department=first_text(((orc, 17, 2), (orc, 17)), "ordering department", LONG),
        patient_class=patient_class(structure.pv1),
        patient_location=point_of_care(structure.pv1),
        patient_weight=patient_weight([*group.obxs, *structure.obxs]),
        ordered_at=ordered.as_datetime() if ordered else None,
        procedures=_procedures(steps),
    )


def _procedures(steps: list[_Step]) -> tuple[ProcedureRequest, ...]:
    by_procedure: dict[str, list[_Step]] = {}
    for step in steps:
        by_procedure.setdefault(step.procedure_id, []).append(step)
    procedures = []
    for procedure_id, its_steps in by_procedure.items():
        obr = its_steps[0].group.obr
        assert obr is not None
        uids = {s.study_instance_uid for s in its_steps if s.study_instance_uid}
        if len(uids) > 1:
            where = Location("IPC", 1, 3) if its_steps[0].group.ipcs else Location("ZDS", 1, 1)
            raise Hl7ContentError(
                f"{where}: requested procedure {procedure_id} is given {len(uids)} Study "
                "Instance UIDs",
                where,
            )
        code, meaning, scheme = procedure_code(obr)
        procedures.append(
            ProcedureRequest(
                requested_procedure_id=procedure_id,
                description=meaning or code,
                code_value=code,
                coding_scheme=scheme,
                code_meaning=meaning,
                study_instance_uid=uids.pop() if uids else None,
                steps=tuple(
                    ScheduledStepRequest(
                        step_id=step.step_id,
                        modality=step.modality,
                        station_ae_title=step.station_ae_title,
                        station_name=step.station_name,
                        start=_start(step.group),
                        description=meaning or code,
                    )
                    for step in its_steps
                ),
            )
        )
    return tuple(procedures)


def _start(group: _Group) -> datetime | None:
    """The scheduled start, local time as written (an offset, when given, is dropped)."""
    candidates: list[tuple[Segment | None, int, int]] = [
        (group.tq1, 7, 1),
        (group.orc, 7, 4),
        (group.obr, 27, 4),
        (group.obr, 36, 1),
        (group.orc, 15, 1),
    ]
    for segment, number, component in candidates:
        if segment is None:
            continue
        value = segment.value(number, component)
        if value:
            moment = timestamp_from_dtm(
                value, segment.location(number, component), "scheduled start"
            )
            return moment.as_datetime().replace(tzinfo=None) if moment else None
    return None


def _priority(group: _Group) -> Priority:
    candidates = ((group.orc, 7, 6), (group.obr, 27, 6), (group.tq1, 9, 1), (group.obr, 5, 1))
    for segment, number, component in candidates:
        if segment is None:
            continue
        value = segment.value(number, component).upper()
        if not value:
            continue
        priority = PRIORITY_FROM_HL7.get(value)
        if priority is None:
            raise Hl7ContentError(
                f"{segment.location(number, component)}: priority {value[:8]!r} is not in HL7 "
                "table 0027 (S, A, R, P, C, T)",
                segment.location(number, component),
                ErrorCode.TABLE_VALUE_NOT_FOUND,
            )
        return priority
    return Priority.ROUTINE
