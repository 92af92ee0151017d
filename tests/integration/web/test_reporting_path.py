"""The reading and reporting path as one test, every peer real (issue 6): the HIS registers a
preterm newborn in the NICU and orders a STAT cranial ultrasound (HL7 A04 + ORM^O01 over MLLP);
the images are stored (DCMTK storescu); the exam comes first on the reading worklist, above the
exams already waiting; a radiologist, in Chromium, opens it, writes the report from the neonatal
head ultrasound template and signs it final with a critical finding; the referring clinician,
in Chromium, finds the child and reads the report on the timeline; the HIS receives the
ORU^R01; FHIR returns the DiagnosticReport; the PDF is served; and the report object is in the
study, found by C-FIND at instance level."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from playwright.sync_api import Browser, Page, expect

from pedipacs.db.engine import Database
from pedipacs.model.origin import Origin
from pedipacs.model.ris import PatientIdentity
from pedipacs.security.access import AccessPolicy
from pedipacs.security.accounts import AccountService
from pedipacs.security.permissions import Role
from support import hl7_samples as samples
from support.browser import open_signed_in
from support.dcmtk import findscu_outcome, storescu
from support.hl7_listener import Hl7Listener, segments
from support.hl7_samples import MllpClient, ack_code
from support.reporting import image
from support.server import RunningServer, free_port, start_server

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
CLINICIAN, CLINICIAN_PASSWORD = "dr.okafor", "a long enough phrase for tests"
HEAD_US = {
    "clinical_information": "Preterm twin, 31 weeks; apnoea and a falling haemoglobin.",
    "findings": "Germinal matrix haemorrhage on the left with blood in a dilated left ventricle "
    "(ventricular index 13 mm). Right side normal.",
    "impression": "Grade III intraventricular haemorrhage on the left.",
}
CRITICAL = "Grade III IVH with ventricular dilatation"


class Hospital:
    def __init__(self, server: RunningServer, hl7_port: int, his: Hl7Listener) -> None:
        self.server, self.hl7_port, self.his = server, hl7_port, his

    def url(self, path: str) -> str:
        return f"{self.server.http_url}{path}"

    def get_json(self, path: str, **params: str) -> Any:
        answer = self.server.get(self.url(path), params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def hospital(tmp_path: Path, dcmtk: None) -> Iterator[Hospital]:
    hl7_port, his_port = free_port(), free_port()
    with Hl7Listener(his_port) as his:
        server = start_server(
            tmp_path / "server",
            f"sqlite:///{tmp_path / 'index.sqlite3'}",
            extra_env={
                "PEDIPACS_HL7_PORT": str(hl7_port),
                "PEDIPACS_HL7_SENDERS": '["HIS"]',
                "PEDIPACS_HL7_REPORT_RECEIVERS": json.dumps([f"127.0.0.1:{his_port}"]),
                "PEDIPACS_JOB_POLL_SECONDS": "0.2",
            },
        )
        try:
            yield Hospital(server, hl7_port, his)
        finally:
            server.stop()


def waiting_exams(site: Hospital, tmp_path: Path) -> None:
    """Two exams waiting before the newborn's: an outpatient and an inpatient, routine."""
    for accession, patient_class in (("W1", "O"), ("W2", "I")):
        placed = site.server.post(site.url("/api/orders"), json={
            "accessionNumber": accession, "patientClass": patient_class,
            "patient": {"id": f"MRN-{accession}", "issuer": "CHILDRENS", "name": "MARTIN^ZOE",
                        "birthDate": "2015-03-01", "sex": "F"},
            "procedures": [{"description": "XR chest", "steps": [{"modality": "DX"}]}],
        })  # fmt: skip
        assert placed.status_code == 201, placed.text
        study = placed.json()["studyInstanceUids"][0]
        store(site, tmp_path, [image(PatientIdentity(f"MRN-{accession}", "CHILDRENS"),
                                     "MARTIN^ZOE", accession, study, modality="DX")])  # fmt: skip


def store(site: Hospital, tmp_path: Path, objects: list[bytes]) -> None:
    folder = tmp_path / f"store-{len(list(tmp_path.glob('store-*')))}"
    folder.mkdir()
    paths = []
    for number, data in enumerate(objects):
        path = folder / f"{number}.dcm"
        path.write_bytes(data)
        paths.append(path)
    stored = storescu(site.server, paths, calling_ae="US_NICU_1")
    assert stored.returncode == 0, stored.stderr[-2000:]


def clinician_for_the_newborn(site: Hospital) -> None:
    database = Database(site.server.database_url)
    try:
        origin = Origin.cli("tests")
        AccountService(database).create(
            CLINICIAN, frozenset({Role.REFERRING_CLINICIAN}), origin, password=CLINICIAN_PASSWORD
        )
        AccessPolicy(database).add_to_care_team(CLINICIAN, samples.NEWBORN_ID, origin)
    finally:
        database.dispose()


def report_object_stored(site: Hospital, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if site.get_json("/api/jobs", kind="report-object", state="done")["jobs"]:
            return
        time.sleep(0.1)  # polling the server for an outcome of its background worker
    raise AssertionError(site.get_json("/api/jobs"))


def sign_in(page: Page, site: Hospital, username: str, password: str, path: str) -> None:
    page.goto(site.url(path))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(site.url(path))


def test_order_images_worklist_report_clinician_his_fhir_pdf_and_study(
    hospital: Hospital, tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    site = hospital
    waiting_exams(site, tmp_path)
    with MllpClient(site.hl7_port) as his:
        assert ack_code(his.send(samples.adt())) == "AA"
        assert ack_code(his.send(samples.orm())) == "AA"
    newborn = PatientIdentity(samples.NEWBORN_ID, samples.FACILITY)
    head_us = [
        image(newborn, "LEFEVRE^BABY GIRL", samples.ACCESSION, samples.STUDY_UID, n,
              body_part="HEAD")
        for n in (1, 2)
    ]  # fmt: skip
    store(site, tmp_path, head_us)

    # The radiologist: the STAT newborn first, read and signed from the template.
    radiologist = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    radiologist.set_default_timeout(30_000)
    page = radiologist.new_page()
    open_signed_in(page, site.server, "/reading")
    rows = page.locator("#reading-table tbody tr")
    order = [rows.nth(i).get_attribute("data-accession") for i in range(rows.count())]
    assert order == [samples.ACCESSION, "W2", "W1"], order
    page.locator(f"tr[data-accession='{samples.ACCESSION}']").get_by_role(
        "button", name="Read"
    ).click()
    page.get_by_label("Template").select_option("us-head-neonatal")
    page.get_by_role("button", name="Use this template").click()
    for key, text in HEAD_US.items():
        page.locator(f"#section-{key}").fill(text)
    page.get_by_label("Critical finding (optional)").fill(CRITICAL)
    page.get_by_role("button", name="Sign final").click()
    expect(page.locator("#report-status")).to_have_text("final")
    page.screenshot(path=artifacts / "path-report-signed.png", full_page=True)
    radiologist.close()

    # The referring clinician finds the child and reads the report.
    clinician_for_the_newborn(site)
    clinician = browser.new_context(viewport={"width": 768, "height": 1024}, locale="en-GB")
    clinician.set_default_timeout(30_000)
    page = clinician.new_page()
    sign_in(page, site, CLINICIAN, CLINICIAN_PASSWORD, "/patients")
    page.get_by_label("Patient ID or name").fill("LEFEVRE")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name="LEFEVRE, BABY GIRL").click()
    exam = page.locator(f"li.exam[data-accession='{samples.ACCESSION}']")
    expect(exam.locator(".timeline-report")).to_contain_text("Grade III intraventricular")
    expect(page.locator("#open-critical")).to_contain_text(CRITICAL)
    page.screenshot(path=artifacts / "path-clinician-timeline.png", full_page=True)
    pdf = page.request.get(site.url(f"/api/reports/{samples.ACCESSION}/pdf"))
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    clinician.close()

    # The HIS gets the ORU^R01.
    [oru] = site.his.wait_for(1)
    [obr] = segments(oru, "OBR")
    assert (obr[18], obr[25]) == (samples.ACCESSION, "F")
    assert any(CRITICAL in obx[5] and obx[8] == "AA" for obx in segments(oru, "OBX"))

    # FHIR: the DiagnosticReport of the order.
    requests = Bundle.model_validate(
        site.get_json("/fhir/r4/ServiceRequest", identifier=samples.ACCESSION)
    )
    [request_entry] = requests.entry or []
    based_on = f"ServiceRequest/{request_entry.resource.id}"
    reports = site.get_json("/fhir/r4/DiagnosticReport", **{"based-on": based_on})
    [entry] = reports["entry"]
    report = DiagnosticReport.model_validate(entry["resource"])
    assert report.status == "final"
    assert "Grade III intraventricular haemorrhage" in (report.conclusion or "")
    forms = entry["resource"]["presentedForm"]  # base64 as sent (the model decodes it)
    texts = [form["data"] for form in forms if form["contentType"].startswith("text/plain")]
    assert texts and "ventricular index 13 mm" in base64.b64decode(texts[0]).decode()

    # The report object in the study, beside the images.
    report_object_stored(site)
    found = findscu_outcome(
        site.server,
        ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={samples.STUDY_UID}", "SOPInstanceUID",
         "SOPClassUID"],
        tmp_path / "find",
    )  # fmt: skip
    classes = [str(identifier.SOPClassUID) for identifier in found.responses]
    assert found.status == 0 and classes.count(ENCAPSULATED_PDF) == 1 and len(classes) == 3
