"""The reading and reporting API, as JSON: the reading worklist and claims, reports (draft,
sign, addenda, PDF), templates, critical results, a child's imaging timeline, turnaround times
and the background jobs.

The routes turn JSON into one service call and the record back into JSON; the rules (who may
change what, when a report may be signed) are the services'. Domain errors become their HTTP
status through the app's one error table (`dicomweb/errors.py`): 404 unknown, 409 conflict
(signed already, claimed by a colleague, changed since), 400 refused input, each with a message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pedipacs.errors import InvalidInput
from pedipacs.http.auth import CurrentOrigin, CurrentPrincipal, requires
from pedipacs.jobs.queue import JobQueue, JobState
from pedipacs.model.reports import (
    ReadingFilter,
)
from pedipacs.reports.authoring import ReportDraft, ReportService
from pedipacs.reports.critical import CriticalResultService
from pedipacs.reports.reading import ReadingWorklistService
from pedipacs.reports.report_objects import ReportObjectService
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.templates import ReportTemplate, TemplateSection
from pedipacs.reports.timeline import PatientTimelineService
from pedipacs.reports.turnaround import TurnaroundService
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.reports_json import (
    claim_json,
    critical_json,
    job_json,
    match_json,
    prior_json,
    reading_item_json,
    report_json,
    template_json,
    timeline_json,
    turnaround_json,
)

MAX_TEXT = 20_000


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ReportIn(_Body):
    sections: dict[str, Annotated[str, Field(max_length=MAX_TEXT)]]
    revision: int | None = None  # the version the change was made on; none for a new report
    template: str | None = Field(None, max_length=64)


class SignIn(ReportIn):
    final: bool = True
    critical_finding: str | None = Field(None, max_length=2000)


class AddendumIn(_Body):
    text: str = Field(max_length=MAX_TEXT)
    critical_finding: str | None = Field(None, max_length=2000)


class AcknowledgementIn(_Body):
    note: str = Field("", max_length=1000)


class SectionIn(_Body):
    key: str = Field(max_length=64)
    title: str = Field(max_length=128)
    required: bool = False
    text: str = Field("", max_length=MAX_TEXT)


class TemplateIn(_Body):
    key: str = Field(max_length=64)
    title: str = Field(max_length=128)
    modalities: list[Annotated[str, Field(max_length=16)]] = Field(default_factory=list)
    sections: list[SectionIn] = Field(max_length=30)


def parse_moment(value: str, name: str) -> datetime | None:
    """An ISO date or date-time from a query parameter; a date means its start, in UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise InvalidInput(f"{name}: {value[:40]!r} is not an ISO date or date-time") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- the routes --------------------------------------------------------------------------------


def reports_api_router(
    *,
    reports: ReportService,
    report_objects: ReportObjectService,
    templates: ReportTemplateService,
    reading: ReadingWorklistService,
    critical_results: CriticalResultService,
    timelines: PatientTimelineService,
    turnaround: TurnaroundService,
    jobs: JobQueue,
) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["reporting"])
    _reading_routes(router, reading, templates)
    _report_routes(router, reports, report_objects)
    _clinical_routes(router, critical_results, timelines)
    _operations_routes(router, turnaround, jobs)
    return router


def _reading_routes(
    router: APIRouter, reading: ReadingWorklistService, templates: ReportTemplateService
) -> None:
    reporter = requires(Permission.REPORT)

    @router.get("/reading-worklist", dependencies=[reporter])
    def reading_worklist(
        origin: CurrentOrigin,
        modality: str = "",
        body_part: Annotated[str, Query(alias="bodyPart")] = "",
        location: str = "",
        department: str = "",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        wanted = ReadingFilter(
            modality=modality.strip() or None,
            body_part=body_part.strip() or None,
            location=location.strip() or None,
            department=department.strip() or None,
            limit=limit,
            offset=offset,
        )
        page = reading.page(wanted, origin)
        return {
            "total": page.total,
            "offset": page.offset,
            "limit": page.limit,
            "items": [reading_item_json(item) for item in page.items],
        }

    @router.post("/reading-worklist/{accession}/claim", dependencies=[reporter])
    def claim(accession: str, origin: CurrentOrigin) -> dict[str, Any]:
        return claim_json(reading.claim(accession, origin))

    @router.post("/reading-worklist/{accession}/release", dependencies=[reporter])
    def release(accession: str, origin: CurrentOrigin) -> dict[str, Any]:
        return {"accessionNumber": accession, "released": reading.release(accession, origin)}

    @router.get("/exams/{accession}/priors", dependencies=[requires(Permission.SEARCH)])
    def priors(accession: str, origin: CurrentOrigin) -> list[dict[str, Any]]:
        return [prior_json(prior) for prior in reading.priors(accession, origin)]

    @router.get("/report-templates", dependencies=[reporter])
    def list_templates() -> list[dict[str, Any]]:
        return [template_json(template) for template in templates.all()]

    @router.post(
        "/report-templates", status_code=201, dependencies=[requires(Permission.ADMINISTER)]
    )
    def add_template(body: TemplateIn, origin: CurrentOrigin) -> dict[str, Any]:
        template = ReportTemplate(
            key=body.key,
            title=body.title,
            sections=tuple(
                TemplateSection(s.key, s.title, s.required, s.text) for s in body.sections
            ),
            modalities=tuple(m.upper() for m in body.modalities),
            is_built_in=False,
        )
        return template_json(templates.add(template, origin))


def _report_routes(
    router: APIRouter, reports: ReportService, report_objects: ReportObjectService
) -> None:
    reporter = requires(Permission.REPORT)
    searcher = requires(Permission.SEARCH)

    @router.get("/reports/{accession}", dependencies=[searcher])
    def read_report(
        accession: str, origin: CurrentOrigin, principal: CurrentPrincipal
    ) -> dict[str, Any]:
        # Drafts are the radiologists' own business; clinicians see released reports only.
        include_drafts = principal.may(Permission.REPORT)
        return report_json(reports.get(accession, origin, include_drafts=include_drafts))

    @router.put("/reports/{accession}", dependencies=[reporter])
    def save_report(accession: str, body: ReportIn, origin: CurrentOrigin) -> dict[str, Any]:
        draft = ReportDraft(body.sections, body.revision, body.template)
        return report_json(reports.save(accession, draft, origin))

    @router.post("/reports/{accession}/sign", dependencies=[reporter])
    def sign_report(accession: str, body: SignIn, origin: CurrentOrigin) -> dict[str, Any]:
        draft = ReportDraft(body.sections, body.revision, body.template)
        signed = reports.sign(
            accession, draft, origin, is_final=body.final, critical_finding=body.critical_finding
        )
        return report_json(signed)

    @router.post("/reports/{accession}/addenda", status_code=201, dependencies=[reporter])
    def add_addendum(accession: str, body: AddendumIn, origin: CurrentOrigin) -> dict[str, Any]:
        amended = reports.add_addendum(
            accession, body.text, origin, critical_finding=body.critical_finding
        )
        return report_json(amended)

    @router.get("/reports/{accession}/pdf", dependencies=[searcher])
    def report_pdf(accession: str, origin: CurrentOrigin) -> Response:
        pdf, filename = report_objects.pdf(accession, origin)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'inline; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )


def _clinical_routes(
    router: APIRouter, critical_results: CriticalResultService, timelines: PatientTimelineService
) -> None:
    searcher = requires(Permission.SEARCH)

    @router.get("/critical-results", dependencies=[searcher])
    def open_critical_results(origin: CurrentOrigin) -> list[dict[str, Any]]:
        return [critical_json(result) for result in critical_results.open_results(origin)]

    @router.post(
        "/critical-results/{result_id}/acknowledge",
        dependencies=[requires(Permission.ACKNOWLEDGE_RESULTS)],
    )
    def acknowledge(
        result_id: int, body: AcknowledgementIn, origin: CurrentOrigin
    ) -> dict[str, Any]:
        return critical_json(critical_results.acknowledge(result_id, origin, body.note))

    @router.get("/patients", dependencies=[searcher])
    def search_patients(
        origin: CurrentOrigin, q: Annotated[str, Query(max_length=64)] = ""
    ) -> list[dict[str, Any]]:
        return [match_json(match) for match in timelines.search(q, origin)]

    @router.get("/patients/{patient_id}/timeline", dependencies=[searcher])
    def timeline(
        patient_id: str, origin: CurrentOrigin, issuer: Annotated[str, Query(max_length=64)] = ""
    ) -> dict[str, Any]:
        return timeline_json(timelines.timeline(patient_id, origin, issuer=issuer))


def _operations_routes(router: APIRouter, turnaround: TurnaroundService, jobs: JobQueue) -> None:
    @router.get("/turnaround", dependencies=[requires(Permission.MONITOR)])
    def turnaround_times(origin: CurrentOrigin, since: str = "", until: str = "") -> dict[str, Any]:
        report = turnaround.report(
            origin, since=parse_moment(since, "since"), until=parse_moment(until, "until")
        )
        return turnaround_json(report)

    @router.get("/jobs", dependencies=[requires(Permission.ADMINISTER)])
    def list_jobs(
        state: str = "",
        kind: str = "",
        subject: str = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        wanted = None
        if state.strip():
            if state.strip() not in JobState._value2member_map_:
                raise InvalidInput(f"state: one of {', '.join(s.value for s in JobState)}")
            wanted = JobState(state.strip())
        return {
            "counts": {str(k): v for k, v in jobs.counts().items()},
            "jobs": [
                job_json(job)
                for job in jobs.recent(
                    state=wanted, kind=kind.strip() or None, subject=subject.strip() or None,
                    limit=limit,
                )
            ],
        }  # fmt: skip

    @router.post("/jobs/{job_id}/retry", dependencies=[requires(Permission.ADMINISTER)])
    def retry_job(job_id: int, origin: CurrentOrigin) -> dict[str, Any]:
        return job_json(jobs.retry(job_id, origin))
