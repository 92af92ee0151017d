"""The operations pages: `/turnaround` (medians and 90th percentiles of the reporting times for
a period, and the exams waiting past their target; monitor permission) and `/admin/jobs` (the
background jobs, by state, with a retry for the failed ones; administer permission)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pedipacs.dicomweb.errors import http_status_from_error, public_message
from pedipacs.errors import InvalidInput, PedipacsError
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.jobs.queue import JobQueue, JobState
from pedipacs.reports.turnaround import DEFAULT_PERIOD, TurnaroundService
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.labels import page

JOBS_SHOWN = 100
Day = Annotated[str, Query(max_length=10)]


def day_from(text: str, name: str) -> date | None:
    """A date typed in the form (YYYY-MM-DD); none when empty.

    >>> day_from("2026-12-03", "since"), day_from(" ", "since")
    (datetime.date(2026, 12, 3), None)
    """
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError as error:
        raise InvalidInput(f"{name}: {text[:10]!r} is not a date (YYYY-MM-DD)") from error


def period(since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The days asked, both included; the last 30 days by default.

    >>> period(None, None, date(2026, 12, 31))
    (datetime.date(2026, 12, 2), datetime.date(2026, 12, 31))
    """
    last = until or today
    return since or last - (DEFAULT_PERIOD - timedelta(days=1)), last


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def job_state(text: str) -> JobState | None:
    """
    >>> job_state("failed"), job_state("")
    (<JobState.FAILED: 'failed'>, None)
    """
    text = text.strip()
    if not text:
        return None
    if text not in JobState._value2member_map_:
        raise InvalidInput(f"state: one of {', '.join(s.value for s in JobState)}")
    return JobState(text)


class OperationsPages:
    def __init__(self, turnaround: TurnaroundService, jobs: JobQueue) -> None:
        self.turnaround = turnaround
        self.jobs = jobs

    def turnaround_page(
        self, request: Request, origin: CurrentOrigin, since: Day = "", until: Day = ""
    ) -> HTMLResponse:
        form = {"since": since, "until": until}
        try:
            first, last = period(day_from(since, "Since"), day_from(until, "Until"), date.today())
            report = self.turnaround.report(
                origin, since=_start(first), until=_start(last + timedelta(days=1))
            )
        except PedipacsError as error:
            return page(request, "turnaround.html", http_status_from_error(error), form=form,
                        report=None, error=public_message(error))  # fmt: skip
        form = {"since": first.isoformat(), "until": last.isoformat()}
        return page(request, "turnaround.html", form=form, report=report,
                    targets=self.turnaround.targets)  # fmt: skip

    def show_jobs(
        self,
        request: Request,
        state: str,
        *,
        error: PedipacsError | None = None,
        done: str | None = None,
    ) -> HTMLResponse:
        try:
            wanted = job_state(state)
        except InvalidInput as refused:
            error, wanted, state = refused, None, ""
        return page(
            request, "jobs.html", http_status_from_error(error) if error else 200,
            counts=self.jobs.counts(), states=list(JobState), state=state,
            jobs=self.jobs.recent(state=wanted, limit=JOBS_SHOWN),
            error=public_message(error) if error else None, done=done,
        )  # fmt: skip

    def jobs_page(
        self,
        request: Request,
        state: Annotated[str, Query(max_length=16)] = "",
        retried: Annotated[int | None, Query()] = None,
    ) -> HTMLResponse:
        done = f"Job {retried} is due again; a worker takes it shortly." if retried else None
        return self.show_jobs(request, state, done=done)

    def retry(
        self,
        request: Request,
        origin: CurrentOrigin,
        job_id: int,
        state: Annotated[str, Query(max_length=16)] = "",
    ) -> Response:
        try:
            self.jobs.retry(job_id, origin)
        except PedipacsError as error:
            return self.show_jobs(request, state, error=error)
        query = urlencode({"state": state, "retried": job_id} if state else {"retried": job_id})
        return RedirectResponse(f"/admin/jobs?{query}", status_code=303)


def operations_pages_router(*, turnaround: TurnaroundService, jobs: JobQueue) -> APIRouter:
    pages = OperationsPages(turnaround, jobs)
    administrator = requires(Permission.ADMINISTER)
    router = APIRouter(include_in_schema=False)
    router.add_api_route(
        "/turnaround", pages.turnaround_page, dependencies=[requires(Permission.MONITOR)]
    )
    router.add_api_route("/admin/jobs", pages.jobs_page, dependencies=[administrator])
    router.add_api_route(
        "/admin/jobs/{job_id}/retry", pages.retry, methods=["POST"], dependencies=[administrator]
    )
    return router
