"""Released reports leave pedipacs by durable jobs, against a running `pedipacs serve` on both
databases: an ORU^R01 over MLLP to a listening HIS (preliminary P, final F, addendum C, the
critical finding flagged AA) and the signed report as an Encapsulated PDF in the study, found by
C-FIND at image level. A HIS that is down when the report is signed gets it once it is back,
exactly once, even with pedipacs restarted in between; a HIS that refuses the content leaves the
job failed until an administrator retries it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pedipacs.model.ris import PatientIdentity
from support.databases import fresh_database
from support.dcmtk import findscu_outcome, storescu
from support.hl7_listener import Hl7Listener, segments
from support.reporting import FINDINGS_TEXT, image
from support.server import RunningServer, free_port, start_server

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SUCCESS = 0x0000


class Hospital:
    """pedipacs (restartable) and the port of the HIS that receives its reports."""

    def __init__(self, server: RunningServer, his_port: int) -> None:
        self.server = server
        self.his_port = his_port

    def restart(self) -> None:
        self.server = self.server.restart()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = (self.server.get if method == "GET" else self.server.post)(
            f"{self.server.http_url}{path}", **kwargs
        )
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json()


@pytest.fixture(params=["sqlite", "postgresql"])
def hospital(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool, dcmtk: None
) -> Iterator[Hospital]:
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    his_port = free_port()
    with fresh_database(request.param, tmp_path) as url:
        server = start_server(
            tmp_path / "server",
            url,
            extra_env={
                "PEDIPACS_HL7_REPORT_RECEIVERS": json.dumps([f"127.0.0.1:{his_port}"]),
                "PEDIPACS_JOB_RETRY_SECONDS": "0.2",
                "PEDIPACS_JOB_POLL_SECONDS": "0.2",
            },
        )
        site = Hospital(server, his_port)
        try:
            yield site
        finally:
            site.server.stop()


def exam_with_images(site: Hospital, tmp_path: Path, patient_id: str) -> tuple[str, str]:
    """An order placed on the API and two images stored with storescu; (accession, study)."""
    placed = site.call("POST", "/api/orders", json={
        "patient": {"id": patient_id, "issuer": "CHILDRENS", "name": "NGUYEN^LAN",
                    "birthDate": "2019-05-20", "sex": "F"},
        "priority": "STAT",
        "reason": "Right iliac fossa pain",
        "referringPhysician": "OKAFOR^ADA",
        "procedures": [{"description": "US abdomen", "code": {"value": "USABD", "scheme": "99PEDI",
                        "meaning": "US abdomen"},
                        "steps": [{"modality": "US", "stationAeTitle": "US_ED_1",
                                   "start": "2026-12-07T09:30"}]}],
    })  # fmt: skip
    accession = placed["accessionNumber"]
    study = placed["studyInstanceUids"][0]
    folder = tmp_path / f"images-{accession}"
    folder.mkdir()
    paths = []
    for number in (1, 2):
        path = folder / f"{number}.dcm"
        path.write_bytes(image(_identity(patient_id), "NGUYEN^LAN", accession, study, number))
        paths.append(path)
    stored = storescu(site.server, paths, calling_ae="US_ED_1")
    assert stored.returncode == 0, stored.stderr[-2000:]
    return accession, study


def _identity(patient_id: str) -> PatientIdentity:
    return PatientIdentity(patient_id, "CHILDRENS", "MR")


def sign(site: Hospital, accession: str, *, final: bool = True, **extra: Any) -> dict[str, Any]:
    body = {"sections": FINDINGS_TEXT, "template": "us-appendicitis", "final": final, **extra}
    current = site.server.get(f"{site.server.http_url}/api/reports/{accession}")
    if current.status_code == 200:
        body["revision"] = current.json()["revision"]
        body.pop("template")
    return site.call("POST", f"/api/reports/{accession}/sign", json=body)  # type: ignore[no-any-return]


def jobs_of(site: Hospital, report_id: int) -> list[dict[str, Any]]:
    return site.call("GET", "/api/jobs", params={"subject": f"report:{report_id}"})["jobs"]  # type: ignore[no-any-return]


def wait_for_jobs(site: Hospital, report_id: int, done: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = jobs_of(site, report_id)
        if sum(job["state"] == "done" for job in jobs) >= done:
            return jobs
        time.sleep(0.1)  # polling the server for an outcome of its background worker
    raise AssertionError(f"jobs not done: {jobs_of(site, report_id)}")


def test_preliminary_final_and_addendum_reach_the_his_and_the_study(
    hospital: Hospital, tmp_path: Path
) -> None:
    accession, study = exam_with_images(hospital, tmp_path, "MRN7001")
    with Hl7Listener(hospital.his_port) as his:
        preliminary = sign(hospital, accession, final=False)
        [first] = his.wait_for(1)
        final = sign(hospital, accession, criticalFinding="Perforated appendix with abscess")
        messages = his.wait_for(2)
        hospital.call("POST", f"/api/reports/{accession}/addenda",
                      json={"text": "Free fluid in the pelvis."})  # fmt: skip
        messages = his.wait_for(3)
        wait_for_jobs(hospital, final["id"], done=5)  # 3 ORU, 2 report objects
    assert preliminary["status"] == "preliminary"
    [msh] = segments(first, "MSH")
    assert (msh[8], msh[11]) == ("ORU^R01^ORU_R01", "2.5.1")
    [pid] = segments(first, "PID")
    assert pid[3].startswith("MRN7001^^^CHILDRENS")
    assert [obr[25] for m in messages for obr in segments(m, "OBR")] == ["P", "F", "C"]
    assert [obr[18] for m in messages for obr in segments(m, "OBR")] == [accession] * 3
    observations = segments(messages[1], "OBX")
    impression = [obx for obx in observations if obx[3].startswith("IMPRESSION")]
    assert impression[0][5] == "Acute appendicitis." and impression[0][8] == "AA"
    assert any(obx[5] == "Perforated appendix with abscess" for obx in observations)
    assert any(obx[3].startswith("113014^") and obx[5] == study for obx in observations)
    assert "Free fluid in the pelvis." in segments(messages[2], "OBX")[-2][5]
    # The signed report (final, then amended) in its study, beside the images.
    outcome = findscu_outcome(
        hospital.server,
        ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}", "SOPInstanceUID",
         "SOPClassUID"],
        tmp_path / "find",
    )  # fmt: skip
    assert outcome.status == SUCCESS
    classes = sorted(str(identifier.SOPClassUID) for identifier in outcome.responses)
    assert classes.count(ENCAPSULATED_PDF) == 2 and len(classes) == 4
    pdf = hospital.server.get(f"{hospital.server.http_url}/api/reports/{accession}/pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_a_his_that_is_down_gets_the_report_once_back_exactly_once_across_a_restart(
    hospital: Hospital, tmp_path: Path
) -> None:
    accession, _ = exam_with_images(hospital, tmp_path, "MRN7002")
    report = sign(hospital, accession)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the worker tried and failed at least once
        [oru] = [job for job in jobs_of(hospital, report["id"]) if job["kind"] == "hl7-oru"]
        if oru["attempts"] >= 1 and oru["lastError"]:
            break
        time.sleep(0.1)  # polling the server for an outcome of its background worker
    assert oru["state"] == "pending" and "Connection refused" in oru["lastError"]
    hospital.restart()
    with Hl7Listener(hospital.his_port) as his:
        his.wait_for(1)
        jobs = wait_for_jobs(hospital, report["id"], done=2)
        assert len(his.messages) == 1
    [oru] = [job for job in jobs if job["kind"] == "hl7-oru"]
    [msh] = segments(his.messages[0], "MSH")
    assert msh[9] == f"PPR{oru['id']}"  # the same control ID on every attempt


def test_a_his_that_refuses_the_content_fails_the_job_until_it_is_retried(
    hospital: Hospital, tmp_path: Path
) -> None:
    accession, _ = exam_with_images(hospital, tmp_path, "MRN7003")
    his = Hl7Listener(hospital.his_port, ack_code="AE").start()
    try:
        report = sign(hospital, accession)
        his.wait_for(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = hospital.call("GET", "/api/jobs", params={"state": "failed"})["jobs"]
            if failed:
                break
            time.sleep(0.1)  # polling the server for an outcome of its background worker
        [job] = failed
        assert job["attempts"] == 1 and "refused the message (AE)" in job["lastError"]
        his.ack_code = "AA"
        hospital.call("POST", f"/api/jobs/{job['id']}/retry")
        his.wait_for(2)
        wait_for_jobs(hospital, report["id"], done=2)
    finally:
        his.stop()
    audit = hospital.call("GET", "/api/audit", params={"eventId": "110106"})
    details = [entry["detail"] for entry in audit]
    assert any("refused by 127.0.0.1" in detail for detail in details), details
    assert any("sent to 127.0.0.1" in detail for detail in details), details
