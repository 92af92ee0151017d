"""Who may talk to pedipacs over DIMSE: unknown calling AEs are refused by default, a registered
peer may do what it was granted and gets 0x0124 for the rest; every refusal is audited."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dcmtk import run, store_statuses
from support.files import PYDICOM_TEST_FILES
from support.server import RunningServer, start_server

NOT_AUTHORIZED = 0x0124
SECURITY_ALERT = "110113"


@pytest.fixture
def guarded_server(tmp_path: Path, database_url: str, dcmtk: None) -> Iterator[RunningServer]:
    """A server with the default policy: unknown calling AE titles refused."""
    running = start_server(
        tmp_path / "server",
        database_url,
        extra_env={"PEDIPACS_ACCEPT_UNKNOWN_CALLING_AES": "false"},
    )
    yield running
    running.stop()


def echo(server: RunningServer, calling_ae: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            "echoscu",
            "-aet",
            calling_ae,
            "-aec",
            server.ae_title,
            "127.0.0.1",
            str(server.dicom_port),
        ]
    )


def test_an_unknown_calling_ae_is_rejected_and_the_rejection_audited(
    guarded_server: RunningServer,
) -> None:
    echoed = echo(guarded_server, "STRANGER")

    assert echoed.returncode != 0
    assert "Association Rejected" in echoed.stdout + echoed.stderr
    assert "Calling AE Title Not Recognized" in echoed.stdout + echoed.stderr
    assert any("STRANGER" in alert for alert in guarded_server.security_alerts())


def test_a_registered_peer_may_do_what_it_was_granted_and_nothing_else(
    guarded_server: RunningServer,
) -> None:
    guarded_server.register_peer("WARDWS", allow="find")

    echoed = echo(guarded_server, "WARDWS")
    stored = store_statuses(
        guarded_server, PYDICOM_TEST_FILES / "CT_small.dcm", calling_ae="WARDWS"
    )
    found = run(
        ["findscu", "-S", "-aet", "WARDWS", "-aec", guarded_server.ae_title,
         "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
         "127.0.0.1", str(guarded_server.dicom_port)]
    )  # fmt: skip

    assert echoed.returncode == 0, echoed.stderr
    assert stored == [NOT_AUTHORIZED]
    assert found.returncode == 0, found.stderr
    assert any("store by WARDWS" in alert for alert in guarded_server.security_alerts())
