"""The auditor's view of the audit trail: a search page (`/audit`) and its JSON twin
(`/api/audit`). Both need the read-audit permission, and every search is itself recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from pedipacs.errors import InvalidInput
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.security.audit import MAX_SEARCH_RESULTS, AuditEntry, AuditSearch, AuditTrail
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.account import render

OUTCOMES = {0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure"}
Text = Annotated[str, Query(max_length=64)]


def _day(text: str, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError as error:
        raise InvalidInput(f"{text!r} is not a date (YYYY-MM-DD)") from error
    return datetime.combine(day + timedelta(days=1 if end else 0), time(), tzinfo=UTC)


def _criteria(
    user: str, patient_id: str, study: str, event_id: str, failures: bool,
    since: str, until: str, before: int | None, limit: int,
) -> AuditSearch:  # fmt: skip
    return AuditSearch(
        user=user.strip().lower() or None,
        patient_id=patient_id.strip() or None,
        study_instance_uid=study.strip() or None,
        event_id=event_id.strip() or None,
        failures_only=failures,
        since=_day(since),
        until=_day(until, end=True),
        before_sequence=before,
        limit=limit,
    )


def _as_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "sequence": entry.sequence,
        "at": entry.at.isoformat(),
        "eventId": entry.event_id,
        "eventName": entry.event_name,
        "action": entry.action,
        "outcome": entry.outcome,
        "door": entry.door,
        "user": entry.user,
        "remoteHost": entry.remote_host,
        "remoteAe": entry.remote_ae,
        "patientId": entry.patient_id,
        "studyInstanceUid": entry.study_instance_uid,
        "detail": entry.detail,
    }


def audit_router(trail: AuditTrail) -> APIRouter:
    router = APIRouter(include_in_schema=False, dependencies=[requires(Permission.READ_AUDIT)])

    @router.get("/api/audit")
    def search_json(
        origin: CurrentOrigin,
        user: Text = "",
        patientId: Text = "",  # noqa: N803 (DICOM-style parameter names, as in QIDO-RS)
        studyInstanceUid: Text = "",  # noqa: N803
        eventId: Text = "",  # noqa: N803
        failures: bool = False,
        since: Text = "",
        until: Text = "",
        before: int | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 200,
    ) -> list[dict[str, Any]]:
        criteria = _criteria(
            user, patientId, studyInstanceUid, eventId, failures, since, until, before, limit
        )
        return [_as_json(entry) for entry in trail.search(criteria, origin)]

    @router.get("/audit", response_class=HTMLResponse)
    def search_page(
        request: Request,
        origin: CurrentOrigin,
        user: Text = "",
        patient_id: Text = "",
        event_id: Text = "",
        failures: bool = False,
        since: Text = "",
        until: Text = "",
        before: int | None = None,
    ) -> HTMLResponse:
        criteria = _criteria(user, patient_id, "", event_id, failures, since, until, before, 100)
        entries = trail.search(criteria, origin)
        older = entries[-1].sequence if len(entries) == criteria.limit else None
        return render(
            request,
            "audit.html",
            entries=entries,
            outcomes=OUTCOMES,
            form={
                "user": user, "patient_id": patient_id, "event_id": event_id,
                "failures": failures, "since": since, "until": until,
            },
            older=older,
        )  # fmt: skip

    return router
