"""The report editor, `/reports/{accession}`: a radiologist writes the report of an exam in the
sections of a template (chosen before the first save), saves drafts, signs it preliminary or
final, flags a critical finding, and adds addenda once it is final. Clinicians (search
permission) read the released report there, without the forms.

Each form posts with the session's CSRF token and the report's revision, and is answered with
a redirect back to the editor (post/redirect/get); a refusal of the report service (required
sections empty, signed already, claimed by a colleague, changed since) shows the editor again
with its message above the form, the text typed kept, and the status the API would answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pedipacs.dicomweb.errors import http_status_from_error, public_message
from pedipacs.errors import InvalidInput, NotFound, PedipacsError
from pedipacs.http.auth import CurrentOrigin, CurrentPrincipal, requires
from pedipacs.model.origin import Origin
from pedipacs.model.reports import ReportRecord
from pedipacs.reports.authoring import ReportDraft, ReportService
from pedipacs.reports.reading import ReadingWorklistService
from pedipacs.reports.report_views import UnknownReportError
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.templates import GENERAL, ReportTemplate
from pedipacs.ris.orders import OrderService
from pedipacs.security.permissions import Permission, Principal
from pedipacs.web.pages.labels import name_part, page
from pedipacs.web.pages.orders import FormFields
from pedipacs.web.pages.reading import report_url

SECTION_FIELD = "section-"  # a section's textarea: `section-<key>`
ACTIONS = ("save", "preliminary", "final")
DONE_MESSAGES = {
    "save": "The draft was saved.",
    "preliminary": "Signed as preliminary: clinicians see it now; the final report is to follow.",
    "final": "Signed final: the report is released and the exam has left the reading worklist.",
    "addendum": "The addendum was added and sent on.",
}


@dataclass(frozen=True, slots=True)
class Typed:
    """What a refused form held, shown again as typed."""

    sections: dict[str, str] = field(default_factory=dict)
    revision: str = ""
    critical_finding: str = ""
    addendum: str = ""
    template_key: str = ""


def sections_from_form(form: dict[str, str]) -> dict[str, str]:
    """The section texts of the editor's form.

    >>> sections_from_form({"section-findings": "Normal.", "revision": "2"})
    {'findings': 'Normal.'}
    """
    return {
        key.removeprefix(SECTION_FIELD): value
        for key, value in form.items()
        if key.startswith(SECTION_FIELD)
    }


def revision_from_form(text: str) -> int | None:
    """The revision the change was made on; none for a new report.

    >>> revision_from_form("3"), revision_from_form("")
    (3, None)
    """
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise InvalidInput(f"revision {text[:12]!r} is not a number; reload the report")
    return int(text)


class EditorPages:
    """The handlers, bound to the services a report is written with."""

    def __init__(
        self,
        reports: ReportService,
        templates: ReportTemplateService,
        reading: ReadingWorklistService,
        orders: OrderService,
    ) -> None:
        self.reports = reports
        self.templates = templates
        self.reading = reading
        self.orders = orders

    # -- the page -------------------------------------------------------------------------------

    def _report(self, accession: str, origin: Origin, principal: Principal) -> ReportRecord | None:
        try:
            return self.reports.get(
                accession, origin, include_drafts=principal.may(Permission.REPORT)
            )
        except UnknownReportError:
            return None

    def _template(self, report: ReportRecord | None, wanted: str) -> ReportTemplate:
        """The report's template; before the first save the one chosen, else the general."""
        return self.templates.get(report.template_key if report else wanted or GENERAL)

    def show(
        self,
        request: Request,
        origin: Origin,
        principal: Principal,
        accession: str,
        *,
        typed: Typed | None = None,
        error: PedipacsError | None = None,
        done: str = "",
    ) -> HTMLResponse:
        try:
            detail = self.orders.detail(accession, origin)
        except NotFound as unknown:
            return page(request, "report.html", 404, exam=None, error=public_message(unknown))
        report = self._report(accession, origin, principal)
        may_report = principal.may(Permission.REPORT)
        status = http_status_from_error(error) if error else 200
        if report is None and not may_report:
            error, status = UnknownReportError(f"exam {accession} has no released report yet"), 404
        try:
            template = self._template(report, typed.template_key if typed else "")
        except InvalidInput as unknown:  # a template key from the address that names none
            error, status = unknown, 400
            template = self.templates.get(GENERAL)
        context = self._context(report, template, typed, may_report)
        return page(
            request, "report.html", status, exam=detail, report=report, report_template=template,
            priors=self.reading.priors(accession, origin) if may_report else (),
            claim=self.reading.current_claim(accession), accession=accession,
            error=public_message(error) if error else None, done=DONE_MESSAGES.get(done),
            templates=self.templates.all() if report is None and may_report else (),
            **context,
        )  # fmt: skip

    @staticmethod
    def _context(
        report: ReportRecord | None, template: ReportTemplate, typed: Typed | None, may_report: bool
    ) -> dict[str, Any]:
        typed = typed or Typed()
        is_signed = report is not None and report.status.is_signed
        if typed.sections:
            text = {**template.starting_text(), **typed.sections}
        else:
            text = report.sections if report else template.starting_text()
        return {
            "text": text,
            "revision": typed.revision or (str(report.revision) if report else ""),
            "critical_finding": typed.critical_finding,
            "addendum": typed.addendum,
            "is_editable": may_report and not is_signed,
            "may_add_addendum": may_report and is_signed,
            "pdf_url": f"/api/reports/{name_part(report.accession_number)}/pdf"
            if report is not None and report.status.is_released
            else None,
        }

    def editor(
        self,
        request: Request,
        origin: CurrentOrigin,
        principal: CurrentPrincipal,
        accession: str,
        template: Annotated[str, Query(max_length=64)] = "",
        done: Annotated[str, Query(max_length=16)] = "",
    ) -> HTMLResponse:
        return self.show(request, origin, principal, accession, done=done,
                         typed=Typed(template_key=template.strip()))  # fmt: skip

    # -- the forms ------------------------------------------------------------------------------

    def submit(
        self,
        request: Request,
        origin: CurrentOrigin,
        principal: CurrentPrincipal,
        accession: str,
        form: FormFields,
    ) -> Response:
        """Save the draft, or sign it preliminary or final (the button pressed: `action`)."""
        action = form.get("action", "")
        typed = Typed(
            sections=sections_from_form(form),
            revision=form.get("revision", ""),
            critical_finding=form.get("critical_finding", ""),
            template_key=form.get("template", ""),
        )
        try:
            if action not in ACTIONS:
                raise InvalidInput(f"unknown action {action[:16]!r}: save, preliminary or final")
            draft = ReportDraft(
                typed.sections, revision_from_form(typed.revision), typed.template_key or None
            )
            if action == "save":
                self.reports.save(accession, draft, origin)
            else:
                self.reports.sign(accession, draft, origin, is_final=action == "final",
                                  critical_finding=typed.critical_finding)  # fmt: skip
        except PedipacsError as error:
            return self.show(request, origin, principal, accession, typed=typed, error=error)
        return RedirectResponse(report_url(accession, action), status_code=303)

    def add_addendum(
        self,
        request: Request,
        origin: CurrentOrigin,
        principal: CurrentPrincipal,
        accession: str,
        form: FormFields,
    ) -> Response:
        typed = Typed(
            addendum=form.get("addendum", ""), critical_finding=form.get("critical_finding", "")
        )
        try:
            self.reports.add_addendum(accession, typed.addendum, origin,
                                      critical_finding=typed.critical_finding)  # fmt: skip
        except PedipacsError as error:
            return self.show(request, origin, principal, accession, typed=typed, error=error)
        return RedirectResponse(report_url(accession, "addendum"), status_code=303)


def report_pages_router(
    *,
    reports: ReportService,
    templates: ReportTemplateService,
    reading: ReadingWorklistService,
    orders: OrderService,
) -> APIRouter:
    pages = EditorPages(reports, templates, reading, orders)
    reporter = requires(Permission.REPORT)
    router = APIRouter(include_in_schema=False)
    router.add_api_route(
        "/reports/{accession}", pages.editor, dependencies=[requires(Permission.SEARCH)]
    )
    router.add_api_route(
        "/reports/{accession}", pages.submit, methods=["POST"], dependencies=[reporter]
    )
    router.add_api_route(
        "/reports/{accession}/addenda", pages.add_addendum, methods=["POST"],
        dependencies=[reporter],
    )  # fmt: skip
    return router
