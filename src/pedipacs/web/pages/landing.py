"""The landing page at `/`: a study list that searches through QIDO-RS and opens the viewer.

The page itself holds no patient data: it is a form, rendered here, and a small script
(`static/landing.js`) that asks `/dicomweb/studies` for the studies and writes them as rows.
Styles and scripts are files under `/static/`, never inline, so the Content-Security-Policy
sent with the page can forbid inline code.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response
from starlette.types import Scope

from pedipacs import __version__
from pedipacs.web.viewer import VIEWER_PATH

PAGES_DIR = Path(__file__).resolve().parent
STATIC_DIR = PAGES_DIR / "static"
TEMPLATES = Jinja2Templates(directory=PAGES_DIR / "templates")
STATIC_ROUTE_NAME = "pages-static"

# Scripts, styles, images and requests only from this origin; nothing inline, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# The modalities offered in the search form, the ones a children's hospital sees most.
MODALITIES = (
    ("US", "Ultrasound"),
    ("CR", "Computed radiography"),
    ("DX", "Digital radiography"),
    ("RF", "Fluoroscopy"),
    ("CT", "Computed tomography"),
    ("MR", "Magnetic resonance"),
    ("NM", "Nuclear medicine"),
    ("PT", "PET"),
    ("XA", "Angiography"),
)


class RevalidatedStaticFiles(StaticFiles):
    """Static files that browsers revalidate (ETag) before each use.

    The scripts import each other by plain relative URLs, so a version in the URL cannot
    reach them all; revalidation keeps a new release from mixing with cached old modules.
    """

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def landing_router(
    *,
    qido_path: str = "/dicomweb/studies",
    viewer_path: str = f"{VIEWER_PATH}/viewer",
    page_size: int = 25,
) -> APIRouter:
    """`GET /` (the study list) and the pages' assets under `/static/`.

    `qido_path` is where the page searches for studies, and `viewer_path` the viewer URL
    that a study opens at, with `?StudyInstanceUIDs=<uid>` appended.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False, name="landing")
    def landing(request: Request) -> HTMLResponse:
        def static_url(name: str) -> str:
            # A path, not an absolute URL: right behind a proxy that rewrites the host.
            return request.url_for(STATIC_ROUTE_NAME, path=name).path

        return TEMPLATES.TemplateResponse(
            request,
            "landing.html",
            {
                "static_url": static_url,
                "version": __version__,
                "qido_url": qido_path,
                "viewer_url": viewer_path,
                "page_size": page_size,
                "modalities": MODALITIES,
                "principal": getattr(request.state, "principal", None),
            },
            headers=SECURITY_HEADERS,
        )

    router.mount("/static", RevalidatedStaticFiles(directory=STATIC_DIR), name=STATIC_ROUTE_NAME)
    return router
