"""The orders pages for sites without an HIS feed: `/orders` (the list, cards on a tablet),
`/orders/new` (register the patient and place an order), `/orders/{accession}` (the order,
its schedule changed, or cancelled after a confirmation page).

Plain forms, no script (the Content-Security-Policy forbids inline code): each posts with the
session's CSRF token and is answered with a redirect (post/redirect/get), or, when refused,
with the form again, the reason and the values typed. A form is turned into the JSON shape
of `/api/orders` and validated by the same models, then given to the same RIS services.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from pedipacs.errors import Conflict, InvalidInput, NotFound, PedipacsError
from pedipacs.http.auth import CurrentOrigin
from pedipacs.model.ris import OrderRequest, Priority
from pedipacs.ris.order_views import OrderDetail
from pedipacs.ris.orders import CLOSED, OrderService
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.account import render
from pedipacs.web.pages.labels import age, person
from pedipacs.web.pages.landing import MODALITIES
from pedipacs.web.pages.orders_api import (
    Day,
    Manager,
    OrderIn,
    Reader,
    StepIn,
    Text,
    order_from_body,
    orders_api_router,
    registration_from_body,
    search_from_params,
)

PAGE_SIZE = 25
DONE_MESSAGES = {
    "placed": "The order was placed; it is on the worklist.",
    "changed": "The schedule was changed.",
    "cancelled": "The order was cancelled; it is off the worklist.",
}
STATUS_FILTERS = (
    ("open", "Open"),
    ("scheduled", "Scheduled"),
    ("in-progress", "In progress"),
    ("completed", "Completed"),
    ("cancelled", "Cancelled"),
    ("all", "All"),
)
# A field of the API's shape -> its label on the form, for the message of a refused form.
FIELD_LABELS = {
    "accessionNumber": "Accession number",
    "patient.id": "Patient ID",
    "patient.issuer": "Issuer",
    "patient.name": "Name",
    "patient.birthDate": "Birth date",
    "patient.sex": "Sex",
    "patient.mother.id": "Mother's patient ID",
    "patientWeight": "Weight (kg)",
    "priority": "Priority",
    "reason": "Reason",
    "referringPhysician": "Referring physician",
    "procedures.0.description": "Procedure",
    "procedures.0.code.value": "Procedure code",
    "procedures.0.steps.0.modality": "Modality",
    "procedures.0.steps.0.stationAeTitle": "Station AE title",
    "procedures.0.steps.0.start": "Date and time",
    "stationAeTitle": "Station AE title",
    "modality": "Modality",
    "start": "Date and time",
}
_NAME_DELIMITERS = ("^", "=", "\\")


def form_problem(error: ValidationError) -> str:
    """The first refused field, by its label on the form, and why."""
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{FIELD_LABELS.get(where, where)}: {problem['msg']}"


async def form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormFields = Annotated[dict[str, str], Depends(form_fields)]


def body_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The new-order form in the JSON shape `/api/orders` takes. The form asks a little
    more than the API: a family name, the date and time, and a newborn's mother."""
    family, given = form.get("family_name", "").strip(), form.get("given_name", "").strip()
    if not family:
        raise InvalidInput("Family name: the patient's family name is needed")
    if any(d in family + given for d in _NAME_DELIMITERS):
        raise InvalidInput("Name: ^, = and \\ separate the parts of a DICOM name; leave them out")
    temporary = form.get("is_temporary") == "on"
    mother_id = form.get("mother_id", "").strip()
    if temporary and not mother_id:
        raise InvalidInput("Mother's patient ID: a newborn's temporary identity needs it")
    day, clock = form.get("scheduled_date", "").strip(), form.get("scheduled_time", "").strip()
    if not day or not clock:
        raise InvalidInput("Date and time: both are needed to put the order on the worklist")
    code, issuer = form.get("code", "").strip(), form.get("issuer", "")
    return {
        "accessionNumber": form.get("accession_number"),
        "patient": {
            "id": form.get("patient_id", ""),
            "issuer": issuer,
            "name": f"{family}^{given}" if given else family,
            "birthDate": form.get("birth_date") or None,
            "sex": form.get("sex"),
            "isTemporary": temporary,
            # The mother is registered with the same issuer as her child.
            "mother": {"id": mother_id, "issuer": issuer} if mother_id else None,
        },
        "priority": form.get("priority") or "ROUTINE",
        "reason": form.get("reason"),
        "referringPhysician": form.get("referring_physician"),
        "patientWeight": form.get("weight") or None,
        "procedures": [
            {
                "description": form.get("description"),
                "code": {"value": code} if code else None,
                "steps": [
                    {
                        "modality": form.get("modality"),
                        "stationAeTitle": form.get("station_ae_title"),
                        "start": f"{day}T{clock}",
                    }
                ],
            }
        ],
    }


def rescheduled(detail: OrderDetail, form: dict[str, str]) -> OrderRequest:
    """The order with the priority and each step's date, time, station and modality from the
    change-schedule form (`start_date-P-S`, `start_time-P-S`, `station-P-S`, `modality-P-S`
    for step S of procedure P); everything else as it stands."""
    procedures = []
    for p, procedure in enumerate(detail.request.procedures):
        steps = []
        for s, step in enumerate(procedure.steps):
            day = form.get(f"start_date-{p}-{s}", "").strip()
            clock = form.get(f"start_time-{p}-{s}", "").strip() or "00:00"
            checked = StepIn.model_validate(  # the API's limits, the API's messages
                {
                    "stationAeTitle": form.get(f"station-{p}-{s}", ""),
                    "modality": form.get(f"modality-{p}-{s}", ""),
                    "start": f"{day}T{clock}" if day else None,
                }
            )
            steps.append(
                replace(step, station_ae_title=checked.station_ae_title,
                        modality=checked.modality, start=checked.start)
            )  # fmt: skip
        procedures.append(replace(procedure, steps=tuple(steps)))
    priority = form.get("priority", str(detail.request.priority))
    if priority not in Priority._value2member_map_:
        raise InvalidInput(f"Priority: {priority[:10]!r} is not STAT, ASAP or ROUTINE")
    return replace(detail.request, priority=Priority(priority), procedures=tuple(procedures))


def order_url(accession: str, done: str = "") -> str:
    return f"/orders/{quote(accession, safe='')}" + (f"?done={done}" if done else "")


def _status(error: PedipacsError) -> int:
    """A refused form's status, as the API would answer (dicomweb/errors.py)."""
    return 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 400


class OrderPages:
    """The handlers, bound to the order service."""

    def __init__(self, orders: OrderService) -> None:
        self.orders = orders

    @staticmethod
    def page(
        request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        may_manage = request.state.principal.may(Permission.MANAGE_ORDERS)
        return render(request, template, status_code, person=person, age=age,
                      modalities=MODALITIES, may_manage=may_manage, **context)  # fmt: skip

    def list_page(
        self,
        request: Request,
        origin: CurrentOrigin,
        status: Text = "open",
        day: Day = "",
        modality: Text = "",
        patient: Text = "",
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> HTMLResponse:
        form = {"status": status, "date": day, "modality": modality, "patient": patient}
        context: dict[str, Any] = {"form": form, "filters": STATUS_FILTERS, "more_url": None}
        try:
            criteria = search_from_params(status, day, modality, patient, PAGE_SIZE, offset)
        except InvalidInput as error:
            return self.page(request, "orders.html", 400, items=(), error=str(error), **context)
        found = self.orders.search(criteria, origin)
        if found.has_more:
            context["more_url"] = "/orders?" + urlencode({**form, "offset": offset + PAGE_SIZE})
        return self.page(request, "orders.html", items=found.items, **context)

    def new_form(self, request: Request) -> HTMLResponse:
        return self.page(request, "order_new.html", form={"scheduled_date": date.today()})

    def place(self, request: Request, origin: CurrentOrigin, form: FormFields) -> Response:
        try:
            body = OrderIn.model_validate(body_from_form(form))
            order = order_from_body(body, body.accession_number or "")
            placed = self.orders.place_for(registration_from_body(body.patient), order, origin)
        except ValidationError as error:
            return self.page(request, "order_new.html", 400, form=form, error=form_problem(error))
        except (InvalidInput, NotFound, Conflict) as error:
            return self.page(request, "order_new.html", _status(error), form=form,
                             error=str(error))  # fmt: skip
        return RedirectResponse(order_url(placed.accession_number, "placed"), status_code=303)

    def detail_page(
        self,
        request: Request,
        origin: CurrentOrigin,
        accession: str,
        template: str = "order.html",
        problem: PedipacsError | None = None,
        done: str = "",
    ) -> HTMLResponse:
        try:
            detail = self.orders.detail(accession, origin)
        except NotFound as error:
            return self.page(request, "order.html", 404, order=None, error=str(error))
        return self.page(
            request, template, _status(problem) if problem else 200, order=detail,
            is_open=detail.status not in CLOSED, error=str(problem) if problem else None,
            done=DONE_MESSAGES.get(done),
        )  # fmt: skip

    def order_page(
        self, request: Request, origin: CurrentOrigin, accession: str, done: str = ""
    ) -> HTMLResponse:
        return self.detail_page(request, origin, accession, done=done)

    def cancel_confirmation(
        self, request: Request, origin: CurrentOrigin, accession: str
    ) -> HTMLResponse:
        return self.detail_page(request, origin, accession, "order_cancel.html")

    def change_schedule(
        self, request: Request, origin: CurrentOrigin, accession: str, form: FormFields
    ) -> Response:
        try:
            detail = self.orders.detail(accession, origin)
            self.orders.change_for(None, rescheduled(detail, form), origin)
        except ValidationError as error:
            problem = InvalidInput(f"Schedule: {form_problem(error)}")
            return self.detail_page(request, origin, accession, problem=problem)
        except (InvalidInput, NotFound, Conflict) as error:  # e.g. cancelled meanwhile
            return self.detail_page(request, origin, accession, problem=error)
        return RedirectResponse(order_url(accession, "changed"), status_code=303)

    def cancel(
        self, request: Request, origin: CurrentOrigin, accession: str, form: FormFields
    ) -> Response:
        reason = " ".join(form.get("reason", "").split())[:1024] or None
        try:
            self.orders.cancel(accession, origin, reason=reason)
        except (InvalidInput, NotFound, Conflict) as error:  # e.g. cancelled meanwhile
            return self.detail_page(request, origin, accession, problem=error)
        return RedirectResponse(order_url(accession, "cancelled"), status_code=303)


def orders_page_router(orders: OrderService) -> APIRouter:
    pages = OrderPages(orders)
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/orders", pages.list_page, dependencies=[Reader])
    # Before /orders/{accession}, which would take "new" for an accession number.
    router.add_api_route("/orders/new", pages.new_form, dependencies=[Manager])
    router.add_api_route("/orders/new", pages.place, methods=["POST"], dependencies=[Manager])
    router.add_api_route("/orders/{accession}", pages.order_page, dependencies=[Reader])
    router.add_api_route(
        "/orders/{accession}/schedule", pages.change_schedule, methods=["POST"],
        dependencies=[Manager],
    )  # fmt: skip
    router.add_api_route(
        "/orders/{accession}/cancel", pages.cancel_confirmation, dependencies=[Manager]
    )
    router.add_api_route(
        "/orders/{accession}/cancel", pages.cancel, methods=["POST"], dependencies=[Manager]
    )
    return router


def orders_router(orders: OrderService) -> APIRouter:
    """The API and the pages, for `create_app`."""
    router = APIRouter()
    router.include_router(orders_api_router(orders))
    router.include_router(orders_page_router(orders))
    return router
