"""C-ECHO and the health endpoints of a running server."""

from __future__ import annotations

import httpx

from support.dcmtk import run
from support.server import RunningServer


def test_echo_succeeds_and_health_endpoints_answer(server: RunningServer, dcmtk: None) -> None:
    echo = run(["echoscu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port)])
    assert echo.returncode == 0, echo.stderr

    assert httpx.get(f"{server.http_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.http_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}
    metrics = httpx.get(f"{server.http_url}/metrics").text
    assert "pedipacs_dimse_requests_total" in metrics
    assert 'service="C-ECHO"' in metrics
