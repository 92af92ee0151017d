"""create_app(node): the FastAPI application. No module-level app: the node is passed in."""

from __future__ import annotations

from fastapi import FastAPI

from pedipacs import __version__
from pedipacs.node import Node
from pedipacs.web import health


def create_app(node: Node) -> FastAPI:
    app = FastAPI(title="pedipacs", version=__version__, docs_url="/api/docs", redoc_url=None)
    app.state.node = node
    app.include_router(health.router)
    return app
