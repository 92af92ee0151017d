"""Shared fixtures: settings on both databases, an in-process node, a running server, DCMTK."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pedipacs.config import Settings
from pedipacs.node import Node
from support.server import RunningServer, start_server

POSTGRES_ADMIN_URL = os.environ.get(
    "PEDIPACS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    available = _postgres_available()
    if not available and os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI but {POSTGRES_ADMIN_URL} is unreachable")
    return available


def _fresh_postgres_schema() -> tuple[str, str]:
    """A new empty schema; returns (its name, a URL whose search_path is that schema)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(POSTGRES_ADMIN_URL)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return schema, f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"


def _drop_postgres_schema(schema: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool
) -> Iterator[str]:
    """A fresh, empty index database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite3'}"
        return
    if not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    schema, url = _fresh_postgres_schema()
    yield url
    _drop_postgres_schema(schema)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        orphan_grace_seconds=0,
        dicom_workers=1,
    )


@pytest.fixture
def node(settings: Settings) -> Iterator[Node]:
    """A migrated node whose services are called in-process (no listener)."""
    built = Node.from_settings(settings)
    built.migrate()
    yield built
    built.stop()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    """`pedipacs serve` in its own process, on free ports, ready for DCMTK tools."""
    running = start_server(tmp_path / "server", database_url)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def dcmtk() -> None:
    from shutil import which

    missing = [
        tool
        for tool in ("echoscu", "storescu", "findscu", "getscu", "movescu", "storescp")
        if which(tool) is None
    ]
    if missing:
        pytest.fail(f"DCMTK tools missing: {missing}; run `make system-deps`")
