"""The clinicians' pages: `/patients` (find a child by ID or name), `/patients/{patient_id}` (the
child's imaging timeline: every exam, newest first, with its images, its released report and
its critical results) and `/critical-results` (those not yet acknowledged, oldest first).

They need the search permission, and show only the patients the asker may see (the services
apply the patient scope and audit every look). Acknowledging a critical result needs the
acknowledge-results permission; its form posts with the session's CSRF token and is answered
with a redirect back to the page it came from.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pedipacs.dicomweb.errors import http_status_from_error, public_message
from pedipacs.errors import NotFound, PedipacsError
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.model.origin import Origin
from pedipacs.reports.critical import CriticalResultService
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.templates import SECTION_TITLES
from pedipacs.reports.timeline import PatientTimelineService
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.labels import name_part, page
from pedipacs.web.pages.orders import FormFields

Text = Annotated[str, Query(max_length=64)]


def timeline_url(patient_id: str, issuer: str = "", **extra: str) -> str:
    """
    >>> timeline_url("MRN 1/2", "CHILDRENS", done="acknowledged")
    '/patients/MRN%201%2F2?issuer=CHILDRENS&done=acknowledged'
    >>> timeline_url("MRN1")
    '/patients/MRN1'
    """
    query = urlencode({k: v for k, v in {"issuer": issuer, **extra}.items() if v})
    return f"/patients/{name_part(patient_id)}" + (f"?{query}" if query else "")


class ClinicalPages:
    """The handlers, bound to the timeline and critical result services."""

    def __init__(
        self,
        timelines: PatientTimelineService,
        critical_results: CriticalResultService,
        templates: ReportTemplateService,
    ) -> None:
        self.timelines = timelines
        self.critical_results = critical_results
        self.templates = templates

    def section_titles(self) -> dict[str, dict[str, str]]:
        """Each template's section titles by key, to print a report's sections under them."""
        return {t.key: {s.key: s.title for s in t.sections} for t in self.templates.all()}

    def search_page(self, request: Request, origin: CurrentOrigin, q: Text = "") -> HTMLResponse:
        if not q.strip():
            return page(request, "patients.html", q="", matches=None)
        try:
            matches = self.timelines.search(q, origin)
        except PedipacsError as error:
            return page(request, "patients.html", http_status_from_error(error), q=q,
                        matches=None, error=public_message(error))  # fmt: skip
        return page(request, "patients.html", q=q, matches=matches, timeline_url=timeline_url)

    def show_timeline(
        self,
        request: Request,
        origin: Origin,
        patient_id: str,
        issuer: str,
        *,
        error: PedipacsError | None = None,
        done: str = "",
    ) -> HTMLResponse:
        try:
            timeline = self.timelines.timeline(patient_id, origin, issuer=issuer)
        except NotFound as unknown:
            return page(request, "timeline.html", 404, timeline=None, error=str(unknown))
        return page(
            request, "timeline.html", http_status_from_error(error) if error else 200,
            timeline=timeline, titles=self.section_titles(), default_titles=SECTION_TITLES,
            error=public_message(error) if error else None,
            done="The critical result was acknowledged." if done == "acknowledged" else None,
        )  # fmt: skip

    def timeline_page(
        self,
        request: Request,
        origin: CurrentOrigin,
        patient_id: str,
        issuer: Text = "",
        done: Text = "",
    ) -> HTMLResponse:
        return self.show_timeline(request, origin, patient_id, issuer, done=done)

    def show_critical(
        self,
        request: Request,
        origin: Origin,
        *,
        error: PedipacsError | None = None,
        done: str = "",
    ) -> HTMLResponse:
        return page(
            request, "critical_results.html", http_status_from_error(error) if error else 200,
            results=self.critical_results.open_results(origin),
            error=public_message(error) if error else None,
            done="The critical result was acknowledged." if done == "acknowledged" else None,
            timeline_url=timeline_url,
        )  # fmt: skip

    def critical_page(
        self, request: Request, origin: CurrentOrigin, done: Text = ""
    ) -> HTMLResponse:
        return self.show_critical(request, origin, done=done)

    def acknowledge(
        self, request: Request, origin: CurrentOrigin, result_id: int, form: FormFields
    ) -> Response:
        """Acknowledge; back to the child's timeline when the form came from it (its
        `patient_id` and `issuer`), else to the list."""
        patient_id, issuer = form.get("patient_id", ""), form.get("issuer", "")
        try:
            self.critical_results.acknowledge(result_id, origin, form.get("note", ""))
        except PedipacsError as error:
            if patient_id:
                return self.show_timeline(request, origin, patient_id, issuer, error=error)
            return self.show_critical(request, origin, error=error)
        if patient_id:
            target = timeline_url(patient_id, issuer, done="acknowledged")
        else:
            target = "/critical-results?done=acknowledged"
        return RedirectResponse(target, status_code=303)


def clinical_pages_router(
    *,
    timelines: PatientTimelineService,
    critical_results: CriticalResultService,
    templates: ReportTemplateService,
) -> APIRouter:
    pages = ClinicalPages(timelines, critical_results, templates)
    searcher = requires(Permission.SEARCH)
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/patients", pages.search_page, dependencies=[searcher])
    # `:path`: a patient ID may hold a slash (sent as %2F, decoded before routing).
    router.add_api_route(
        "/patients/{patient_id:path}", pages.timeline_page, dependencies=[searcher]
    )
    router.add_api_route("/critical-results", pages.critical_page, dependencies=[searcher])
    router.add_api_route(
        "/critical-results/{result_id}/acknowledge", pages.acknowledge, methods=["POST"],
        dependencies=[requires(Permission.ACKNOWLEDGE_RESULTS)],
    )  # fmt: skip
    return router
