"""`/api/orders`: orders placed in pedipacs itself, for sites without an HIS feed, as JSON.

The routes call the RIS services (`ris.orders`, which register the patient and place, change
or cancel the order in one transaction and audit it); nothing here decides a rule of the RIS.
What is checked here is the shape: types, the column sizes the services do not check
themselves, and unknown fields (a typo is refused rather than ignored), each refusal naming
its field. The pages (`web/pages/orders.py`) validate their forms with the same models.

Reading orders needs the manage-orders or the worklist permission; placing, changing and
cancelling them manage-orders.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from pedipacs.errors import InvalidInput
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    OrderSummary,
    PatientIdentity,
    PatientRegistration,
    Priority,
    ProcedureRequest,
    ScheduledStepRequest,
)
from pedipacs.ris.order_views import MAX_PAGE, OrderDetail, OrderListItem, OrderSearch
from pedipacs.ris.orders import OPEN, OrderService
from pedipacs.security.access import AccessPolicy
from pedipacs.security.permissions import Permission

MAX_ITEMS = 20  # procedures in an order, steps in a procedure
MAX_WEIGHT_KG = 1000.0


# -- the JSON shapes ---------------------------------------------------------------------------


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _code_or_none(value: object) -> object:
    """A code typed in any case: `us` is `US`."""
    value = _blank_is_none(value)
    return value.strip().upper() if isinstance(value, str) else value


_Blank = BeforeValidator(_blank_is_none)  # an empty field is a field not given
# Column sizes of the order tables: PostgreSQL would refuse a longer value with a 500 (SQLite
# would keep it whole), so it is refused here, naming its field. What the RIS checks itself
# (accession number, procedure and step IDs, AE title, UID) it names in its own words.
Short = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=16)] | None, _Blank
]
Long = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None, _Blank
]
PersonName = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=324)] | None, _Blank
]
Reason = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=1024)] | None, _Blank
]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
# A patient's identifier: the RIS refuses an empty one too, but in HL7's words (PID-3).
PatientId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
# A DICOM Modality (CS), as the HL7 door accepts it: capitals, digits, '_' and spaces.
Modality = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[A-Z0-9_ ]{1,16}$")] | None,
    BeforeValidator(_code_or_none),
]


class _Shape(BaseModel):
    """camelCase names, as the other JSON APIs; an unknown field is refused (a typo)."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")


class IdentityIn(_Shape):
    id: PatientId
    issuer: Identifier = ""


class PatientIn(_Shape):
    id: PatientId
    issuer: Identifier = ""
    name: PersonName = None  # DICOM PN: FAMILY^GIVEN
    birth_date: date | None = None
    sex: Annotated[Annotated[str, Field(pattern="^[MFO]$")] | None, _Blank] = None  # M, F, O
    is_temporary: bool = False  # a newborn's identity before the permanent one is known
    mother: IdentityIn | None = None


class CodeIn(_Shape):
    value: Short = None
    scheme: Short = None
    meaning: Long = None


class StepIn(_Shape):
    step_id: Short = None
    modality: Modality = None
    station_ae_title: Short = None
    station_name: Short = None
    start: datetime | None = None  # local time of the site
    description: Long = None
    performing_physician: PersonName = None


class ProcedureIn(_Shape):
    requested_procedure_id: Short = None
    description: Long = None
    code: CodeIn | None = None
    study_instance_uid: Long = None
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_ITEMS)


class OrderIn(_Shape):
    accession_number: Short = None
    patient: PatientIn
    priority: Priority = Priority.ROUTINE
    reason: Reason = None
    referring_physician: PersonName = None
    ordering_department: Long = None
    patient_class: Annotated[Annotated[str, Field(max_length=8)] | None, _Blank] = None
    patient_weight: float | None = Field(default=None, gt=0, lt=MAX_WEIGHT_KG)  # kg
    placer_order_number: Long = None
    filler_order_number: Long = None
    procedures: list[ProcedureIn] = Field(min_length=1, max_length=MAX_ITEMS)


class CancelIn(_Shape):
    reason: Reason = None


def registration_from_body(patient: PatientIn) -> PatientRegistration:
    mother = PatientIdentity(patient.mother.id, patient.mother.issuer) if patient.mother else None
    return PatientRegistration(
        identifiers=(PatientIdentity(patient.id, patient.issuer),),
        name=patient.name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        mother=mother,
        is_temporary=patient.is_temporary,
    )


def order_from_body(body: OrderIn, accession_number: str) -> OrderRequest:
    """The order the RIS applies; an empty accession number or ID is made up by the RIS."""
    for number, procedure in enumerate(body.procedures):
        if procedure.description is None and (procedure.code is None or not procedure.code.value):
            raise InvalidInput(f"procedures.{number}: give a description or a code")
    weight = body.patient_weight
    return OrderRequest(
        patient=PatientIdentity(body.patient.id, body.patient.issuer),
        accession_number=accession_number,
        priority=body.priority,
        placer_order_number=body.placer_order_number,
        filler_order_number=body.filler_order_number,
        reason=body.reason,
        referring_physician=body.referring_physician,
        ordering_department=body.ordering_department,
        patient_class=body.patient_class,
        patient_weight=f"{weight:.3f}".rstrip("0").rstrip(".") if weight else None,
        procedures=tuple(
            ProcedureRequest(
                requested_procedure_id=p.requested_procedure_id or "",
                description=p.description or (p.code.meaning if p.code else None),
                code_value=p.code.value if p.code else None,
                coding_scheme=p.code.scheme if p.code else None,
                code_meaning=p.code.meaning if p.code else None,
                study_instance_uid=p.study_instance_uid,
                steps=tuple(
                    ScheduledStepRequest(
                        step_id=s.step_id or "",
                        modality=s.modality,
                        station_ae_title=s.station_ae_title,
                        station_name=s.station_name,
                        # Local wall-clock time as written: an offset, if sent, is dropped
                        # (the worklist carries local times, as the HL7 door keeps them).
                        start=s.start.replace(tzinfo=None) if s.start else None,
                        description=s.description or p.description,
                        performing_physician=s.performing_physician,
                    )
                    for s in p.steps
                ),
            )
            for p in body.procedures
        ),
    )


def _identity_json(identity: PatientIdentity) -> dict[str, Any]:
    return {"id": identity.identifier, "issuer": identity.issuer}


def summary_json(summary: OrderSummary) -> dict[str, Any]:
    return {
        "accessionNumber": summary.accession_number,
        "status": str(summary.status),
        "priority": str(summary.priority),
        "patient": _identity_json(summary.patient),
        "studyInstanceUids": list(summary.study_instance_uids),
        "stepIds": list(summary.step_ids),
    }


def item_json(item: OrderListItem) -> dict[str, Any]:
    return {
        "accessionNumber": item.accession_number,
        "status": str(item.status),
        "priority": str(item.priority),
        "patient": {
            **_identity_json(item.patient),
            "name": item.patient_name,
            "birthDate": _iso(item.patient_birth_date),
            "sex": item.patient_sex,
            "isTemporary": item.is_temporary,
        },
        "description": item.description,
        "modalities": list(item.modalities),
        "stationAeTitles": list(item.station_ae_titles),
        "scheduledStart": _iso(item.scheduled_start),
        "referringPhysician": item.referring_physician,
    }


def detail_json(detail: OrderDetail) -> dict[str, Any]:
    """The order in the shape POST and PUT take, with its status and those of its steps."""
    order, patient = detail.request, detail.patient
    return {
        "accessionNumber": order.accession_number,
        "status": str(detail.status),
        "priority": str(order.priority),
        "patient": {
            **_identity_json(order.patient),
            "name": patient.name,
            "birthDate": _iso(patient.birth_date),
            "sex": patient.sex,
            "isTemporary": patient.is_temporary,
            "mother": _identity_json(patient.mother) if patient.mother else None,
        },
        "reason": order.reason,
        "referringPhysician": order.referring_physician,
        "orderingDepartment": order.ordering_department,
        "patientClass": order.patient_class,
        "patientWeight": float(order.patient_weight) if order.patient_weight else None,
        "placerOrderNumber": order.placer_order_number,
        "fillerOrderNumber": order.filler_order_number,
        "createdAt": detail.created_at.isoformat(),
        "updatedAt": detail.updated_at.isoformat(),
        "procedures": [
            {
                "requestedProcedureId": procedure.requested_procedure_id,
                "description": procedure.description,
                "code": {
                    "value": procedure.code_value,
                    "scheme": procedure.coding_scheme,
                    "meaning": procedure.code_meaning,
                }
                if procedure.code_value
                else None,
                "studyInstanceUid": procedure.study_instance_uid,
                "steps": [
                    {
                        "stepId": step.step_id,
                        "status": str(status),
                        "modality": step.modality,
                        "stationAeTitle": step.station_ae_title,
                        "stationName": step.station_name,
                        "start": _iso(step.start),
                        "description": step.description,
                        "performingPhysician": step.performing_physician,
                    }
                    for step, status in zip(procedure.steps, statuses, strict=True)
                ],
            }
            for procedure, statuses in zip(order.procedures, detail.step_statuses, strict=True)
        ],
        # The images that arrived for the order (matched by Study Instance UID or accession).
        "studies": [
            {
                "studyInstanceUid": study.study_instance_uid,
                "studyDate": _iso(study.study_date),
                "modalities": list(study.modalities),
                "series": study.series,
                "instances": study.instances,
            }
            for study in detail.studies
        ],
    }


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def search_from_params(
    status: str, day: str, modality: str, patient: str, limit: int, offset: int
) -> OrderSearch:
    """`status` is `open`, `all` (or empty) or a comma-separated list of statuses."""
    names = {name.strip().lower() for name in status.split(",") if name.strip()}
    statuses: set[OrderStatus] = set()
    for name in names - {"all"}:
        if name == "open":
            statuses |= OPEN
        elif name in OrderStatus._value2member_map_:
            statuses.add(OrderStatus(name))
        else:
            allowed = ", ".join(["open", "all", *(s.value for s in OrderStatus)])
            raise InvalidInput(f"status: {name[:20]!r} is not one of {allowed}")
    try:
        scheduled_on = date.fromisoformat(day.strip()) if day.strip() else None
    except ValueError as error:
        raise InvalidInput(f"date: {day[:20]!r} is not a date (YYYY-MM-DD)") from error
    return OrderSearch(
        statuses=frozenset(statuses),
        scheduled_on=scheduled_on,
        modality=modality.strip().upper() or None,
        patient=patient.strip() or None,
        limit=limit,
        offset=offset,
    )


def may_read_orders(request: Request) -> None:
    """A route dependency: manage-orders or the worklist (403 otherwise, audited)."""
    principal = request.state.principal
    if principal.may(Permission.MANAGE_ORDERS) or principal.may(Permission.WORKLIST):
        return
    access: AccessPolicy = request.app.state.access
    access.require(principal, Permission.MANAGE_ORDERS, request.state.origin)


Reader = Depends(may_read_orders)
Manager = requires(Permission.MANAGE_ORDERS)
Text = Annotated[str, Query(max_length=64)]
Day = Annotated[str, Query(alias="date", max_length=64)]


def orders_api_router(orders: OrderService) -> APIRouter:
    """`/api/orders`: list, read, place, change, cancel."""
    router = APIRouter(prefix="/api/orders", tags=["orders"])

    @router.get("", dependencies=[Reader])
    def list_orders(
        origin: CurrentOrigin,
        status: Text = "",
        day: Day = "",
        modality: Text = "",
        patient: Text = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Orders soonest scheduled first; `status=open|all|scheduled,...`, `date=YYYY-MM-DD`
        (a step that day), `modality`, `patient` (an identifier or the start of a name)."""
        criteria = search_from_params(status, day, modality, patient, limit, offset)
        page = orders.search(criteria, origin)
        return {
            "orders": [item_json(item) for item in page.items],
            "offset": page.offset,
            "limit": page.limit,
            "hasMore": page.has_more,
        }

    @router.get("/{accession}", dependencies=[Reader])
    def read_order(accession: str, origin: CurrentOrigin) -> dict[str, Any]:
        return detail_json(orders.detail(accession, origin))

    @router.post("", status_code=201, dependencies=[Manager])
    def place(body: OrderIn, origin: CurrentOrigin, response: Response) -> dict[str, Any]:
        """Register the patient and place the order, both or neither."""
        order = order_from_body(body, body.accession_number or "")
        placed = orders.place_for(registration_from_body(body.patient), order, origin)
        response.headers["Location"] = f"/api/orders/{quote(placed.accession_number, safe='')}"
        return summary_json(placed)

    @router.put("/{accession}", dependencies=[Manager])
    def change(accession: str, body: OrderIn, origin: CurrentOrigin) -> dict[str, Any]:
        """Replace the order's details and schedule (the whole order, as POST takes it)."""
        if body.accession_number not in (None, accession):
            raise InvalidInput("accessionNumber: differs from the accession number in the URL")
        order = order_from_body(body, accession)
        return summary_json(orders.change_for(registration_from_body(body.patient), order, origin))

    @router.post("/{accession}/cancel", dependencies=[Manager])
    def cancel(
        accession: str, origin: CurrentOrigin, body: CancelIn | None = None
    ) -> dict[str, Any]:
        reason = body.reason if body else None
        return summary_json(orders.cancel(accession, origin, reason=reason))

    return router
