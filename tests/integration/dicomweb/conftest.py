"""A running server per database for the DICOMweb tests, and a dicomweb-client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dicomweb_client.api import DICOMwebClient

from support.databases import server_on_fresh_database
from support.server import RunningServer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def web_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[RunningServer]:
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    directory = tmp_path_factory.mktemp(f"dicomweb_{request.param}")
    with server_on_fresh_database(request.param, directory) as server:
        yield server


@pytest.fixture
def client(web_server: RunningServer) -> Iterator[DICOMwebClient]:
    dicomweb = DICOMwebClient(f"{web_server.http_url}/dicomweb", headers=web_server.auth_headers)
    # dicomweb-client sends `Host: 127.0.0.1` without the port, so the absolute URLs a server
    # builds from it (RetrieveURL, BulkDataURI) would point at port 80: say it properly.
    dicomweb.host = f"127.0.0.1:{web_server.http_port}"
    yield dicomweb
    dicomweb._session.close()
