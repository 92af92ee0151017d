"""create_app(node): the FastAPI application. No module-level app: the node is passed in."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from pedipacs import __version__
from pedipacs.dicomweb.deps import DicomwebServices
from pedipacs.dicomweb.errors import install_error_handlers
from pedipacs.dicomweb.routes import DICOMWEB_ROOT, dicomweb_router, wado_uri_router
from pedipacs.fhir.routes import FHIR_ROOT, FhirServices, fhir_router
from pedipacs.http.auth import AuthenticationMiddleware
from pedipacs.node import Node
from pedipacs.security.accounts import SESSION, AccountService
from pedipacs.web import health
from pedipacs.web.pages.account import account_router, break_glass_router, password_router
from pedipacs.web.pages.audit import audit_router
from pedipacs.web.pages.clinical import clinical_pages_router
from pedipacs.web.pages.exceptions import exceptions_router
from pedipacs.web.pages.landing import landing_router
from pedipacs.web.pages.oidc import oidc_router
from pedipacs.web.pages.operations import operations_pages_router
from pedipacs.web.pages.orders import orders_router
from pedipacs.web.pages.reading import reading_pages_router
from pedipacs.web.pages.report_editor import report_pages_router
from pedipacs.web.pages.reports_api import reports_api_router
from pedipacs.web.security_headers import SecurityHeadersMiddleware
from pedipacs.web.viewer import viewer_router


def create_app(node: Node) -> FastAPI:
    settings = node.settings
    app = FastAPI(title="pedipacs", version=__version__, docs_url="/api/docs", redoc_url=None)
    app.state.node = node
    app.state.access = node.access
    app.state.dicomweb = DicomwebServices(
        ingest=node.ingest,
        queries=node.queries,
        retrieve=node.retrieve,
        max_object_size=node.settings.max_object_size,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(dicomweb_router(), prefix=DICOMWEB_ROOT)
    app.include_router(wado_uri_router())
    app.include_router(
        viewer_router(node.settings.viewer_dir, issue_token=_viewer_token(node.accounts)),
        prefix="/viewer",
    )
    app.include_router(
        account_router(
            node.accounts,
            attempts_per_minute=settings.signin_attempts_per_minute,
            idle_minutes=settings.session_idle_minutes,
            oidc_enabled=bool(settings.oidc_issuer),
        )
    )
    if settings.oidc_issuer:
        app.include_router(oidc_router(node.accounts, settings))
    app.include_router(password_router(node.accounts))
    app.include_router(audit_router(node.audit))
    app.include_router(exceptions_router(node.exceptions))
    app.include_router(orders_router(node.orders))
    app.include_router(
        reports_api_router(
            reports=node.reports,
            report_objects=node.report_objects,
            templates=node.report_templates,
            reading=node.reading,
            critical_results=node.critical_results,
            timelines=node.timelines,
            turnaround=node.turnaround,
            jobs=node.jobs,
        )
    )
    _include_reporting_pages(app, node)
    app.include_router(
        break_glass_router(node.access, break_glass_minutes=settings.break_glass_minutes)
    )
    app.include_router(
        fhir_router(
            FhirServices(records=node.clinical_records, time_zone=ZoneInfo(settings.timezone))
        ),
        prefix=FHIR_ROOT,
    )
    app.include_router(landing_router())
    # Starlette runs the last added middleware first: security headers around everything,
    # then CORS (preflights carry no credentials), then authentication.
    app.add_middleware(
        AuthenticationMiddleware,
        accounts=node.accounts,
        access=node.access,
        max_body=settings.max_request_body,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Accept", "Content-Type", "Authorization", "If-None-Match"],
            expose_headers=["ETag", "Warning", "Content-Location"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _include_reporting_pages(app: FastAPI, node: Node) -> None:
    """The people's side of the reporting API: reading, reports, timelines, operations."""
    app.include_router(reading_pages_router(node.reading, node.orders))
    app.include_router(
        report_pages_router(
            reports=node.reports,
            templates=node.report_templates,
            reading=node.reading,
            orders=node.orders,
        )
    )
    app.include_router(
        clinical_pages_router(
            timelines=node.timelines,
            critical_results=node.critical_results,
            templates=node.report_templates,
        )
    )
    app.include_router(operations_pages_router(turnaround=node.turnaround, jobs=node.jobs))


def _viewer_token(accounts: AccountService) -> Callable[[Request], str | None]:
    """The viewer opened from a page session gets a bearer token of its own (OHIF reads it
    from `?token=` and sends it with every DICOMweb request); it ends with the session."""

    def issue(request: Request) -> str | None:
        authenticated = getattr(request.state, "authenticated", None)
        if authenticated is None or authenticated.kind != SESSION:
            return None
        return accounts.viewer_token(authenticated)

    return issue
