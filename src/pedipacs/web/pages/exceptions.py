"""The exceptions list: studies that matched no order, or whose order is another patient's or
was cancelled. A page (`/exceptions`: cards, both identities side by side, attach or dismiss)
and its JSON twin (`/api/exceptions`). Both need the manage-orders permission.

The page is server-rendered forms, without scripts: attaching to an order of another patient
answers with a confirmation step naming both children, and only its own form, which carries
`confirm_other_patient`, moves the study.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pedipacs.db.base import aware_utc
from pedipacs.dicomweb.errors import http_status_from_error, public_message
from pedipacs.errors import InvalidInput, PedipacsError
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.model.origin import Origin
from pedipacs.ris.reconcile import (
    MAX_ACCESSION,
    MAX_NOTE,
    MAX_PAGE_SIZE,
    ExceptionReason,
    ExceptionService,
    ExceptionState,
    ImageExceptionSummary,
    OtherPatientError,
    PatientLabel,
)
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.account import render

PAGE_SIZE = 20  # cards per page: a tablet scrolls, it does not page through hundreds
REASONS = {
    ExceptionReason.NO_ORDER: "No order",
    ExceptionReason.PATIENT_DIFFERS: "Another patient",
    ExceptionReason.ORDER_CANCELLED: "Order cancelled",
}
NOTICES = {"attached": "attached to its order", "dismissed": "dismissed"}
StateParameter = Annotated[str, Query(max_length=16)]


class AttachBody(BaseModel):
    # camelCase like the other JSON APIs (accessionNumber); snake_case is accepted too.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    accession_number: str = Field(max_length=MAX_ACCESSION)
    # Required to attach to an order of another patient: the study then moves to them.
    confirm_other_patient: bool = False


class DismissBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(max_length=MAX_NOTE)


def _state(text: str) -> ExceptionState:
    try:
        return ExceptionState(text.strip().lower() or ExceptionState.OPEN)
    except ValueError as error:
        allowed = ", ".join(state.value for state in ExceptionState)
        raise InvalidInput(f"state {text!r}: one of {allowed}") from error


def _patient_json(patient: PatientLabel) -> dict[str, Any]:
    return {
        "patientId": patient.patient_id,
        "issuerOfPatientId": patient.issuer,
        "patientName": patient.name,
        "patientBirthDate": patient.birth_date.isoformat() if patient.birth_date else None,
        "patientSex": patient.sex,
    }


def _as_json(item: ImageExceptionSummary) -> dict[str, Any]:
    return {
        "id": item.id,
        "reason": item.reason.value,
        "state": item.state.value,
        "detail": item.detail,
        "createdAt": aware_utc(item.created_at).isoformat(),
        "resolvedBy": item.resolved_by,
        "resolvedAt": aware_utc(item.resolved_at).isoformat() if item.resolved_at else None,
        "studyInstanceUid": item.study_instance_uid,
        "accessionNumber": item.accession_number,
        "studyDate": item.study_date.isoformat() if item.study_date else None,
        "studyDescription": item.study_description,
        "modalities": list(item.modalities),
        "series": item.series,
        "instances": item.instances,
        # Whose images they are (the study's patient, once attached).
        "patient": _patient_json(item.patient),
        "order": (
            {
                "accessionNumber": item.order.accession_number,
                "status": item.order.status.value,
                "patient": _patient_json(item.order.patient),
            }
            if item.order
            else None
        ),
    }


def _resolved(done: str, exception_id: int) -> RedirectResponse:
    """Back to the list, which says what was done (post, redirect, get: no re-post on reload)."""
    return RedirectResponse(f"/exceptions?done={done}&resolved={exception_id}", status_code=303)


def exceptions_router(exceptions: ExceptionService) -> APIRouter:
    router = APIRouter(include_in_schema=False, dependencies=[requires(Permission.MANAGE_ORDERS)])
    _page_routes(router, exceptions)
    _api_routes(router, exceptions)
    return router


def _page_routes(router: APIRouter, exceptions: ExceptionService) -> None:
    def list_page(
        request: Request,
        origin: Origin,
        *,
        state: ExceptionState = ExceptionState.OPEN,
        offset: int = 0,
        error: str = "",
        notice: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        page = exceptions.search(origin, state=state, offset=offset, limit=PAGE_SIZE)
        return render(
            request,
            "exceptions.html",
            status_code=status_code,
            page=page,
            state=state.value,
            states=[s.value for s in ExceptionState],
            reasons=REASONS,
            error=error,
            notice=notice,
            max_accession=MAX_ACCESSION,
            max_note=MAX_NOTE,
        )

    def failed(request: Request, origin: Origin, error: PedipacsError) -> HTMLResponse:
        """The list again, with the reason the resolution was refused."""
        return list_page(
            request, origin, error=public_message(error), status_code=http_status_from_error(error)
        )

    @router.get("/exceptions", response_class=HTMLResponse)
    def page(
        request: Request,
        origin: CurrentOrigin,
        state: StateParameter = "open",
        offset: Annotated[int, Query(ge=0)] = 0,
        done: Annotated[str, Query(max_length=16)] = "",
        resolved: Annotated[int | None, Query()] = None,
    ) -> HTMLResponse:
        notice = f"Exception {resolved} {NOTICES[done]}." if done in NOTICES and resolved else ""
        return list_page(request, origin, state=_state(state), offset=offset, notice=notice)

    @router.post("/exceptions/{exception_id}/attach", response_class=HTMLResponse)
    def attach_form(
        request: Request,
        origin: CurrentOrigin,
        exception_id: int,
        accession_number: Annotated[str, Form(max_length=MAX_ACCESSION)] = "",
        confirm_other_patient: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            exceptions.attach(
                exception_id, accession_number, origin,
                confirm_other_patient=confirm_other_patient,
            )  # fmt: skip
        except OtherPatientError as other:
            # The second step: both children named, and a form that says it was confirmed.
            return render(
                request,
                "exceptions_confirm.html",
                exception=exceptions.get(exception_id, origin),
                accession_number=accession_number.strip(),
                images=other.images,
                order=other.order,
                message=str(other),
            )
        except PedipacsError as error:
            return failed(request, origin, error)
        return _resolved("attached", exception_id)

    @router.post("/exceptions/{exception_id}/dismiss", response_class=HTMLResponse)
    def dismiss_form(
        request: Request,
        origin: CurrentOrigin,
        exception_id: int,
        note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
    ) -> Response:
        try:
            exceptions.dismiss(exception_id, origin, note)
        except PedipacsError as error:
            return failed(request, origin, error)
        return _resolved("dismissed", exception_id)


def _api_routes(router: APIRouter, exceptions: ExceptionService) -> None:
    @router.get("/api/exceptions")
    def list_json(
        origin: CurrentOrigin,
        state: StateParameter = "open",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    ) -> dict[str, Any]:
        """One page of exceptions, newest first: `{"items": [...], "hasMore": ...}`."""
        page = exceptions.search(origin, state=_state(state), offset=offset, limit=limit)
        return {
            "items": [_as_json(item) for item in page.items],
            "offset": page.offset,
            "limit": page.limit,
            "hasMore": page.has_more,
        }

    @router.get("/api/exceptions/{exception_id}")
    def get_json(origin: CurrentOrigin, exception_id: int) -> dict[str, Any]:
        return _as_json(exceptions.get(exception_id, origin))

    @router.post("/api/exceptions/{exception_id}/attach")
    def attach_json(origin: CurrentOrigin, exception_id: int, body: AttachBody) -> dict[str, Any]:
        """Attach to the order with that accession number; 409 when it is another patient's
        and `confirm_other_patient` is not true (the detail names both patients)."""
        return _as_json(
            exceptions.attach(
                exception_id, body.accession_number, origin,
                confirm_other_patient=body.confirm_other_patient,
            )
        )  # fmt: skip

    @router.post("/api/exceptions/{exception_id}/dismiss")
    def dismiss_json(origin: CurrentOrigin, exception_id: int, body: DismissBody) -> dict[str, Any]:
        return _as_json(exceptions.dismiss(exception_id, origin, body.note))
