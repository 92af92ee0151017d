"""Shared fixtures: settings on both databases, an in-process node, a running server, DCMTK."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pedipacs.config import Settings
from pedipacs.node import Node
from support.databases import POSTGRES_ADMIN_URL, fresh_database, postgres_is_available
from support.server import TESTER, TESTER_PASSWORD, RunningServer, start_server


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    available = postgres_is_available()
    if not available and os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI but {POSTGRES_ADMIN_URL} is unreachable")
    return available


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool
) -> Iterator[str]:
    """A fresh, empty index database of each kind."""
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    with fresh_database(request.param, tmp_path) as url:
        yield url


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
def tester_headers(node: Node) -> dict[str, str]:
    """`Authorization` for an account holding every role, on the in-process node."""
    from pedipacs.model.origin import Origin
    from pedipacs.security.permissions import Role

    node.accounts.create(TESTER, frozenset(Role), Origin.cli("tests"), password=TESTER_PASSWORD)
    token = node.accounts.issue_token(TESTER, "tests", 1, Origin.cli("tests"))
    return {"Authorization": f"Bearer {token}"}


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
