"""The radiologists' reading worklist page, `/reading`: the exams waiting for their report, most
urgent first (the order `ReadingWorklistService` gives), as a table on a PC and cards on a
tablet, narrowed by modality, body part, location and department.

"Read" posts a claim (with the session's CSRF token) and goes on to the report editor; a claim
refused (a colleague reads the exam) shows the list again with the reason. "Open images"
(`/reading/{accession}/images`) opens the viewer with the exam's studies and, beside them, the
child's most relevant other studies, looked up when clicked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pedipacs.dicomweb.errors import http_status_from_error, public_message
from pedipacs.errors import NotFound, PedipacsError
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.model.origin import Origin
from pedipacs.model.reports import ReadingFilter
from pedipacs.reports.reading import ReadingWorklistService
from pedipacs.ris.orders import OrderService
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.labels import name_part, page, viewer_link

PAGE_SIZE = 25
# Priors opened in the viewer with an exam: the most relevant few (same modality, newest).
PRIORS_IN_VIEWER = 4
FilterText = Annotated[str, Query(max_length=64)]


@dataclass(frozen=True, slots=True)
class WorklistForm:
    """The worklist's filters as typed (GET parameters), and the page."""

    modality: str = ""
    body_part: str = ""
    location: str = ""
    department: str = ""
    offset: int = 0

    def reading_filter(self) -> ReadingFilter:
        return ReadingFilter(
            modality=self.modality.strip() or None,
            body_part=self.body_part.strip() or None,
            location=self.location.strip() or None,
            department=self.department.strip() or None,
            limit=PAGE_SIZE,
            offset=self.offset,
        )

    def query(self, **changes: Any) -> str:
        """This form's query string, with `changes`; empty values left out.

        >>> WorklistForm(modality="US").query(offset=25)
        'modality=US&offset=25'
        """
        values = {**asdict(self), **changes}
        return urlencode({key: value for key, value in values.items() if value})


def worklist_form(
    modality: FilterText = "",
    body_part: FilterText = "",
    location: FilterText = "",
    department: FilterText = "",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> WorklistForm:
    return WorklistForm(modality, body_part, location, department, offset)


Filters = Annotated[WorklistForm, Depends(worklist_form)]


def report_url(accession: str, done: str = "") -> str:
    return f"/reports/{name_part(accession)}" + (f"?done={done}" if done else "")


def images_url(accession: str) -> str:
    """Where "Open images" goes: the viewer with the exam and its priors."""
    return f"/reading/{name_part(accession)}/images"


def notice(done: str, accession: str) -> str | None:
    """What the list says after a redirect to it.

    >>> notice("released", "E1"), notice("", "E1")
    ('Exam E1 is back on the worklist.', None)
    """
    messages = {
        "released": f"Exam {accession} is back on the worklist.",
        "not-held": f"Exam {accession} was not claimed by you; nothing was released.",
    }
    return messages.get(done)


class WorklistPages:
    """The handlers, bound to the reading worklist service."""

    def __init__(self, reading: ReadingWorklistService, orders: OrderService) -> None:
        self.reading = reading
        self.orders = orders

    def show(
        self,
        request: Request,
        origin: Origin,
        form: WorklistForm,
        *,
        error: str | None = None,
        done: str | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        found = self.reading.page(form.reading_filter(), origin)
        end = found.offset + len(found.items)
        return page(
            request, "reading.html", status_code, form=form, items=found.items,
            total=found.total, first=found.offset + 1, last=end, facets=self.reading.facets(),
            previous_url=f"/reading?{form.query(offset=max(0, form.offset - PAGE_SIZE))}"
            if form.offset else None,
            next_url=f"/reading?{form.query(offset=end)}" if end < found.total else None,
            error=error, done=done, report_url=report_url, images_url=images_url,
        )  # fmt: skip

    def list_page(
        self,
        request: Request,
        origin: CurrentOrigin,
        form: Filters,
        done: Annotated[str, Query(max_length=16)] = "",
        accession: Annotated[str, Query(max_length=64)] = "",
    ) -> HTMLResponse:
        return self.show(request, origin, form, done=notice(done, accession))

    def claim(
        self, request: Request, origin: CurrentOrigin, accession: str, form: Filters
    ) -> Response:
        """Take the exam, then write its report; refused, the list again with the reason."""
        try:
            self.reading.claim(accession, origin)
        except PedipacsError as error:
            return self.show(request, origin, form, error=public_message(error),
                             status_code=http_status_from_error(error))  # fmt: skip
        return RedirectResponse(report_url(accession), status_code=303)

    def images(self, origin: CurrentOrigin, accession: str) -> Response:
        """The viewer with the exam's studies first, then its most relevant priors."""
        exam = self.orders.detail(accession, origin)
        priors = self.reading.priors(accession, origin)[:PRIORS_IN_VIEWER]
        uids = [s.study_instance_uid for s in exam.studies]
        link = viewer_link([*uids, *(p.study_instance_uid for p in priors)])
        if not link:
            raise NotFound(f"no images have arrived for exam {accession} yet")
        return RedirectResponse(link, status_code=303)

    def release(self, origin: CurrentOrigin, accession: str) -> Response:
        """Give the exam back (the asker's own claim)."""
        released = self.reading.release(accession, origin)
        query = urlencode({"done": "released" if released else "not-held", "accession": accession})
        return RedirectResponse(f"/reading?{query}", status_code=303)


def reading_pages_router(reading: ReadingWorklistService, orders: OrderService) -> APIRouter:
    pages = WorklistPages(reading, orders)
    router = APIRouter(include_in_schema=False, dependencies=[requires(Permission.REPORT)])
    router.add_api_route("/reading", pages.list_page)
    router.add_api_route("/reading/{accession}/images", pages.images)
    router.add_api_route("/reading/{accession}/claim", pages.claim, methods=["POST"])
    router.add_api_route("/reading/{accession}/release", pages.release, methods=["POST"])
    return router
