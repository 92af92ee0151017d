"""One running server per database, holding the conformance data set, for every door's test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.cases import dataset_files
from support.databases import server_on_fresh_database
from support.dcmtk import storescu
from support.server import RunningServer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    dcmtk: None,
) -> Iterator[RunningServer]:
    """`pedipacs serve` on a fresh database of each kind, holding the conformance data set."""
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    directory = tmp_path_factory.mktemp(f"conformance_{request.param}")
    with server_on_fresh_database(request.param, directory) as server:
        stored = storescu(server, dataset_files(directory / "files"))
        assert stored.returncode == 0, stored.stderr
        yield server
