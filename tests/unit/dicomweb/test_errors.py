"""HTTP errors that do not leak internals: a small app with the DICOMweb error handlers.

A client reads its own mistakes in full; our failures (a bug, the database gone) give a fixed
phrase, never a traceback, SQL, a host name or a path, and the log keeps the whole story.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import FastAPI

from pedipacs import errors
from pedipacs.dicomweb.errors import INTERNAL_ERROR_DETAIL, install_error_handlers

SECRET_PATH = "/var/lib/pedipacs/index.sqlite3"
SECRET_SQL = "SELECT patient.patient_id FROM patient"
SECRET_HOST = 'connection to server at "10.1.2.3", port 5432 failed'


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError(f"cannot run {SECRET_SQL} on {SECRET_PATH}")

    @app.get("/database-gone")
    def database_gone() -> None:
        raise errors.StorageUnavailable(f"the index database cannot be read: {SECRET_HOST}")

    @app.get("/bad-query")
    def bad_query() -> None:
        raise errors.InvalidQueryError("limit must be at least 1")

    return app


def _get(path: str) -> httpx.Response:
    async def get() -> httpx.Response:
        # Starlette re-raises the exception after answering, for the server (uvicorn) to log;
        # the transport stands for the server here and keeps it from the client.
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://pedipacs") as client:
            return await client.get(path)

    return asyncio.run(get())


def _assert_nothing_internal(text: str) -> None:
    for secret in (SECRET_PATH, SECRET_SQL, "10.1.2.3", "Traceback", "RuntimeError", ".py"):
        assert secret not in text


def test_unexpected_exception_is_a_500_with_a_generic_body() -> None:
    response = _get("/bug")

    assert response.status_code == 500
    assert response.json() == {"detail": INTERNAL_ERROR_DETAIL}
    _assert_nothing_internal(response.text)


def test_unexpected_exception_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="pedipacs.dicomweb.errors"):
        _get("/bug")

    [entry] = [r for r in caplog.records if r.name == "pedipacs.dicomweb.errors"]
    assert "GET /bug" in entry.getMessage()
    assert entry.exc_info is not None and entry.exc_info[0] is RuntimeError
    assert SECRET_PATH in caplog.text and "Traceback" in caplog.text


def test_storage_unavailable_is_a_503_without_the_driver_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="pedipacs.dicomweb.errors"):
        response = _get("/database-gone")

    assert response.status_code == 503
    assert response.json()["detail"]
    _assert_nothing_internal(response.text)
    assert SECRET_HOST in caplog.text


def test_a_client_mistake_keeps_its_reason() -> None:
    response = _get("/bad-query")

    assert response.status_code == 400
    assert response.json() == {"detail": "limit must be at least 1"}
