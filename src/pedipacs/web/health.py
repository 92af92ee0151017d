"""/healthz (the process answers), /readyz (database and storage reachable), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from pedipacs.errors import PedipacsError

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> JSONResponse:
    node = request.app.state.node
    checks: dict[str, str] = {}
    try:
        node.database.ping()
        checks["database"] = "ok"
    except Exception as error:  # any failure means "not ready"; the message says which
        checks["database"] = f"unavailable: {type(error).__name__}"
    try:
        node.blob_store.check()
        checks["storage"] = "ok"
    except PedipacsError as error:
        checks["storage"] = f"unavailable: {error}"
    is_ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if is_ready else "not ready", "checks": checks},
        status_code=200 if is_ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(request: Request) -> Response:
    if request.app.state.node.metrics_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
