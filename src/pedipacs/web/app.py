"""create_app(node): the FastAPI application. No module-level app: the node is passed in."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from pedipacs import __version__
from pedipacs.dicomweb.deps import DicomwebServices
from pedipacs.dicomweb.errors import install_error_handlers
from pedipacs.dicomweb.routes import DICOMWEB_ROOT, dicomweb_router, wado_uri_router
from pedipacs.node import Node
from pedipacs.web import health
from pedipacs.web.pages.landing import landing_router
from pedipacs.web.security_headers import SecurityHeadersMiddleware
from pedipacs.web.viewer import viewer_router


def create_app(node: Node) -> FastAPI:
    app = FastAPI(title="pedipacs", version=__version__, docs_url="/api/docs", redoc_url=None)
    app.state.node = node
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
    app.include_router(viewer_router(node.settings.viewer_dir), prefix="/viewer")
    app.include_router(landing_router())
    app.add_middleware(SecurityHeadersMiddleware)
    if node.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=node.settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Accept", "Content-Type", "Authorization", "If-None-Match"],
            expose_headers=["ETag", "Warning", "Content-Location"],
        )
    return app
