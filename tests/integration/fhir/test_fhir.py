"""The FHIR R4 door (`/fhir/r4`) of a running `pedipacs serve`, on SQLite and PostgreSQL, over
real HTTP. Two children's exams are made through the real doors: orders placed with
`POST /api/orders`, images stored with STOW-RS, one report signed final with a critical finding
and one preliminary (`POST /api/reports/{accession}/sign`). Every resource answered is parsed
with the fhir.resources R4B models and checked: searches by patient, identifier, status and
order, paging, errors as OperationOutcomes, and a referring clinician who sees only the child
in their care (an empty Bundle, 404 on reads of the other child)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, select

from pedipacs.db.engine import Database
from pedipacs.db.tables import AuditEvent
from pedipacs.model.origin import Origin
from pedipacs.security.access import AccessPolicy
from pedipacs.security.accounts import AccountService
from pedipacs.security.permissions import Role
from support.databases import server_on_fresh_database
from support.files import PYDICOM_TEST_FILES
from support.reporting import FINDINGS_TEXT
from support.server import TESTER, RunningServer

PASSWORD = "a long enough passphrase"
ISSUER = "CHILDRENS"
ISSUER_SYSTEM = "urn:pedipacs:issuer:CHILDRENS"
ACSN = ("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN")
BOUNDARY = "fhirb0undary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
FHIR_JSON = "application/fhir+json; charset=utf-8"
CRITICAL = "Perforated appendix with abscess"


@dataclass
class Exam:
    patient_id: str
    accession: str
    study_uid: str


@dataclass
class Site:
    server: RunningServer
    tokens: dict[str, str]
    sick: Exam  # reported final, with a critical finding; in the clinician's care
    other: Exam  # reported preliminary; another child

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = self.server.token if who == TESTER else self.tokens[who]
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else f"{self.server.http_url}{path}"
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)

    def fhir(self, path: str, who: str = TESTER, **params: Any) -> httpx.Response:
        return self.call(who, "GET", f"/fhir/r4/{path}", params=params)

    def read(self, model: type[FHIRAbstractModel], path: str, who: str = TESTER) -> Any:
        answer = self.fhir(path, who)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == FHIR_JSON
        return model.model_validate(answer.json())

    def search(self, path: str, who: str = TESTER, **params: Any) -> Bundle:
        answer = self.fhir(path, who, **params)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == FHIR_JSON
        bundle = Bundle.model_validate(answer.json())
        assert bundle.type == "searchset"
        return bundle


def matches(bundle: Bundle) -> list[Any]:
    return [e.resource for e in bundle.entry or [] if e.search and e.search.mode == "match"]


def outcome(answer: httpx.Response, status: int) -> OperationOutcome:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == FHIR_JSON
    return OperationOutcome.model_validate(answer.json())


def images(exam: Exam, name: str, count: int) -> bytes:
    """A STOW-RS body of `count` CT images of the exam, as its modality made them."""
    series_uid = generate_uid()
    parts = []
    for number in range(1, count + 1):
        dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
        dataset.PatientID, dataset.IssuerOfPatientID = exam.patient_id, ISSUER
        dataset.PatientName = name
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = exam.study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.InstanceNumber = number
        dataset.AccessionNumber = exam.accession
        dataset.BodyPartExamined = "ABDOMEN"
        buffer = BytesIO()
        dataset.save_as(buffer)
        parts.append(
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + buffer.getvalue()
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def make_exam(server: RunningServer, patient_id: str, name: str, accession: str,
              priority: str) -> Exam:  # fmt: skip
    order = {
        "accessionNumber": accession,
        "patient": {"id": patient_id, "issuer": ISSUER, "name": name,
                    "birthDate": "2019-05-20", "sex": "F"},
        "priority": priority,
        "reason": "Right iliac fossa pain",
        "referringPhysician": "OKAFOR^ADA",
        "procedures": [{"description": "US abdomen",
                        "code": {"value": "RPID1001", "scheme": "99PEDI",
                                 "meaning": "US abdomen"},
                        "steps": [{"modality": "CT", "start": "2026-12-01T09:30"}]}],
    }  # fmt: skip
    placed = server.post(f"{server.http_url}/api/orders", json=order, timeout=30)
    assert placed.status_code == 201, placed.text
    (study_uid,) = placed.json()["studyInstanceUids"]
    exam = Exam(patient_id, accession, study_uid)
    stored = server.post(
        f"{server.http_url}/dicomweb/studies", content=images(exam, name, 2),
        headers={"Content-Type": STOW_TYPE}, timeout=60,
    )  # fmt: skip
    assert stored.status_code == 200, stored.text
    return exam


def sign(server: RunningServer, accession: str, *, is_final: bool, critical: str | None) -> None:
    body = {"sections": FINDINGS_TEXT, "final": is_final, "criticalFinding": critical}
    signed = server.post(f"{server.http_url}/api/reports/{accession}/sign", json=body, timeout=30)
    assert signed.status_code == 200, signed.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    dcmtk: None,
) -> Iterator[Site]:
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    with server_on_fresh_database(request.param, tmp_path_factory.mktemp("fhir")) as server:
        database = Database(server.database_url)
        accounts, access = AccountService(database), AccessPolicy(database)
        tokens = {}
        for name, role in (("clinician", Role.REFERRING_CLINICIAN), ("auditor", Role.AUDITOR)):
            accounts.create(name, frozenset({role}), Origin.cli("tests"), password=PASSWORD)
            tokens[name] = accounts.issue_token(name, "tests", 1, Origin.cli("tests"))
        access.add_to_care_team("clinician", "MRN7001", Origin.cli("tests"))
        database.dispose()
        sick = make_exam(server, "MRN7001", "NGUYEN^LAN", "A7001", "STAT")
        other = make_exam(server, "MRN7002", "OKORO^ADA", "A7002", "ROUTINE")
        sign(server, sick.accession, is_final=True, critical=CRITICAL)
        sign(server, other.accession, is_final=False, critical=None)
        yield Site(server, tokens, sick, other)


def patient_of(site: Site, patient_id: str, who: str = TESTER) -> Patient:
    [patient] = matches(site.search("Patient", who, identifier=f"{ISSUER_SYSTEM}|{patient_id}"))
    return patient


def test_the_capability_statement_names_fhir_4_0_1_and_every_search(site: Site) -> None:
    statement = site.read(CapabilityStatement, "metadata")
    assert (statement.fhirVersion, statement.kind) == ("4.0.1", "instance")
    [rest] = statement.rest
    served = {r.type: {p.name for p in r.searchParam} for r in rest.resource}
    assert served["Patient"] >= {"_id", "identifier", "name", "birthdate", "_count"}
    assert served["ServiceRequest"] >= {"patient", "identifier", "status"}
    assert served["ImagingStudy"] >= {"patient", "identifier", "basedon"}
    assert served["DiagnosticReport"] >= {"patient", "based-on", "status", "identifier"}
    assert site.fhir("metadata", _format="json").status_code == 200


def test_a_patient_is_found_by_identifier_name_and_birth_date_and_read(site: Site) -> None:
    patient = patient_of(site, "MRN7001")
    assert [(i.system, i.value) for i in patient.identifier] == [(ISSUER_SYSTEM, "MRN7001")]
    assert (patient.name[0].family, patient.name[0].given) == ("NGUYEN", ["LAN"])
    assert (patient.gender, str(patient.birthDate), patient.active) == ("female", "2019-05-20",
                                                                        True)  # fmt: skip
    read = site.read(Patient, f"Patient/{patient.id}")
    assert read.model_dump() == patient.model_dump()
    assert [p.id for p in matches(site.search("Patient", identifier="MRN7001"))] == [patient.id]
    assert matches(site.search("Patient", identifier="urn:pedipacs:issuer:ELSEWHERE|MRN7001")) == []
    assert {p.id for p in matches(site.search("Patient", name="ngu,oko"))} == {
        patient.id, patient_of(site, "MRN7002").id
    }  # fmt: skip
    assert matches(site.search("Patient", family="lan")) == []
    both = site.search("Patient", birthdate=["ge2019-05", "lt2019-06"])
    assert both.total == 2
    assert site.search("Patient", birthdate="2020").total == 0


def test_service_requests_are_found_by_patient_identifier_and_status(site: Site) -> None:
    patient = patient_of(site, "MRN7001")
    [order] = matches(site.search("ServiceRequest", patient=f"Patient/{patient.id}"))
    assert [(i.type.coding[0].system, i.type.coding[0].code, i.value)
            for i in order.identifier if i.type.coding[0].code == "ACSN"] == [
        (*ACSN, site.sick.accession)
    ]  # fmt: skip
    assert (order.status, order.intent, order.priority) == ("completed", "order", "stat")
    assert order.subject.reference == f"Patient/{patient.id}"
    assert order.code.text == "US abdomen" and order.code.coding[0].code == "RPID1001"
    assert order.requester.display == "ADA OKAFOR"
    assert order.reasonCode[0].text == "Right iliac fossa pain"
    assert order.authoredOn is not None  # when pedipacs received it (no time from a hospital)
    assert site.read(ServiceRequest, f"ServiceRequest/{order.id}").model_dump() == (
        order.model_dump()
    )
    by_accession = site.search("ServiceRequest", identifier=site.other.accession)
    [other] = matches(by_accession)
    assert other.status == "active"  # a preliminary report: the reading is not finished
    assert [o.id for o in matches(site.search("ServiceRequest", status="completed"))] == [order.id]
    assert [o.id for o in matches(site.search("ServiceRequest", status="active,revoked"))] == [
        other.id
    ]


def test_an_imaging_study_lists_its_series_and_instances_and_its_dicomweb_endpoint(
    site: Site,
) -> None:
    uid = site.sick.study_uid
    study = site.read(ImagingStudy, f"ImagingStudy/{uid}")
    assert (study.id, study.status) == (uid, "available")
    assert {(i.system, i.value) for i in study.identifier if i.system} == {
        ("urn:dicom:uid", f"urn:oid:{uid}")
    }
    [order] = matches(site.search("ServiceRequest", identifier=site.sick.accession))
    assert [reference.reference for reference in study.basedOn] == [f"ServiceRequest/{order.id}"]
    assert str(study.started).startswith("2004-01-19")
    [images] = [s for s in study.series if s.modality.code == "CT"]
    assert (images.numberOfInstances, images.bodySite.display) == (2, "ABDOMEN")
    assert [i.number for i in images.instance] == [1, 2]
    assert images.instance[0].sopClass.code == "urn:oid:1.2.840.10008.5.1.4.1.1.2"
    assert study.numberOfSeries == len(study.series)
    [endpoint] = study.contained
    assert (endpoint.connectionType.code, endpoint.address) == (
        "dicom-wado-rs", f"{site.server.http_url}/dicomweb"
    )  # fmt: skip
    metadata = site.call(TESTER, "GET", f"{endpoint.address}/studies/{uid}/metadata")
    assert metadata.status_code == 200, metadata.text
    for query in ({"identifier": f"urn:dicom:uid|urn:oid:{uid}"},
                  {"identifier": site.sick.accession},
                  {"basedon": f"ServiceRequest/{order.id}"},
                  {"patient": study.subject.reference}):  # fmt: skip
        assert [s.id for s in matches(site.search("ImagingStudy", **query))] == [uid], query


def test_a_diagnostic_report_carries_the_text_the_pdf_and_the_critical_result(
    site: Site,
) -> None:
    patient = patient_of(site, "MRN7001")
    [report] = matches(site.search("DiagnosticReport", patient=patient.id, status="final"))
    [order] = matches(site.search("ServiceRequest", identifier=site.sick.accession))
    assert report.status == "final"
    assert (report.code.coding[0].system, report.code.coding[0].code) == (
        "http://loinc.org", "18748-4"
    )  # fmt: skip
    assert report.category[0].coding[0].code == "RAD"
    assert [r.reference for r in report.basedOn] == [f"ServiceRequest/{order.id}"]
    assert [r.reference for r in report.imagingStudy] == [f"ImagingStudy/{site.sick.study_uid}"]
    assert report.resultsInterpreter[0].display == "tester"
    assert report.conclusion == f"CRITICAL: {CRITICAL}\n\nAcute appendicitis."
    [critical] = report.contained
    assert (critical.valueString, critical.interpretation[0].coding[0].code) == (CRITICAL, "AA")
    text, pdf = report.presentedForm
    plain = text.data.decode()  # the model decodes the base64 of the JSON
    assert FINDINGS_TEXT["findings"] in plain and f"CRITICAL RESULT: {CRITICAL}" in plain
    assert text.size == len(plain.encode())
    fetched = site.call(TESTER, "GET", pdf.url)
    assert fetched.status_code == 200 and fetched.content.startswith(b"%PDF")
    assert site.read(DiagnosticReport, f"DiagnosticReport/{report.id}").model_dump() == (
        report.model_dump()
    )
    [preliminary] = matches(site.search("DiagnosticReport", identifier=site.other.accession))
    assert (preliminary.status, preliminary.conclusion) == ("preliminary", "Acute appendicitis.")
    assert [r.id for r in matches(site.search("DiagnosticReport",
                                              **{"based-on": f"ServiceRequest/{order.id}"}))] == [
        report.id
    ]  # fmt: skip
    assert site.search("DiagnosticReport", status="amended").total == 0


def test_searches_page_with_count_and_a_next_link(site: Site) -> None:
    first = site.search("ServiceRequest", _count=1)
    assert (first.total, len(matches(first))) == (2, 1)
    links = {link.relation: link.url for link in first.link}
    assert "_count=1" in links["self"] and "_offset=1" in links["next"]
    second = Bundle.model_validate(site.call(TESTER, "GET", links["next"]).json())
    assert len(matches(second)) == 1
    assert matches(second)[0].id != matches(first)[0].id
    assert "next" not in {link.relation for link in second.link}
    capped = site.search("Patient", _count=500)
    assert "_count=200" in capped.link[0].url and capped.total == len(matches(capped)) == 2
    counted = site.search("DiagnosticReport", _count=0)
    assert (counted.total, matches(counted)) == (2, [])


def test_errors_are_operation_outcomes(site: Site) -> None:
    missing = outcome(site.fhir("Patient/999999"), 404)
    assert missing.issue[0].code == "not-found"
    assert outcome(site.fhir("ImagingStudy/1.2.3"), 404).issue[0].code == "not-found"
    bad_date = outcome(site.fhir("Patient", birthdate="2019-13-01"), 400)
    assert bad_date.issue[0].code == "invalid" and "birthdate" in bad_date.issue[0].diagnostics
    assert outcome(site.fhir("ServiceRequest", status="done"), 400).issue[0].code == "invalid"
    assert outcome(site.fhir("ServiceRequest", patient="Group/1"), 400).issue[0].code == "invalid"
    assert outcome(site.fhir("Patient", _count="many"), 400).issue[0].code == "invalid"
    assert outcome(site.fhir("Patient", identifier="MRN\x00"), 400).issue[0].code == "invalid"
    assert outcome(site.fhir("ImagingStudy/1.2%00"), 404).issue[0].code == "not-found"
    assert outcome(site.fhir("Patient", **{"name:exact": "x"}), 400).issue[0].code == (
        "not-supported"
    )
    assert outcome(site.fhir("Patient", _format="xml"), 406).issue[0].code == "not-supported"
    xml = site.call(TESTER, "GET", "/fhir/r4/Patient", headers={"Accept": "application/fhir+xml"})
    assert outcome(xml, 406).issue[0].code == "not-supported"
    assert outcome(site.fhir("Observation"), 404).issue[0].code == "not-found"
    created = site.call(TESTER, "POST", "/fhir/r4/Patient", json={"resourceType": "Patient"})
    assert outcome(created, 405).issue[0].code == "not-supported"
    refused = outcome(site.fhir("Patient", who="auditor"), 403)
    assert refused.issue[0].code == "forbidden"


def test_unknown_parameters_are_ignored_and_named_or_refused_when_strict(site: Site) -> None:
    lenient = site.search("Patient", identifier="MRN7001", _sort="name")
    assert lenient.total == 1
    [warning] = [e.resource for e in lenient.entry if e.search.mode == "outcome"]
    assert warning.issue[0].severity == "warning" and "_sort" in warning.issue[0].diagnostics
    assert "_sort" not in lenient.link[0].url
    strict = site.call(TESTER, "GET", "/fhir/r4/Patient", params={"_sort": "name"},
                       headers={"Prefer": "handling=strict"})  # fmt: skip
    assert outcome(strict, 400).issue[0].code == "not-supported"


def test_a_clinician_finds_only_the_child_in_their_care(site: Site) -> None:
    clinician = "clinician"
    [patient] = matches(site.search("Patient", clinician))
    assert patient.identifier[0].value == "MRN7001"
    assert site.search("Patient", clinician, identifier="MRN7002").total == 0
    assert site.search("ServiceRequest", clinician, identifier=site.other.accession).total == 0
    assert site.search("ImagingStudy", clinician).total == 1
    assert site.search("DiagnosticReport", clinician).total == 1
    other = patient_of(site, "MRN7002")
    [other_order] = matches(site.search("ServiceRequest", identifier=site.other.accession))
    [other_report] = matches(site.search("DiagnosticReport", identifier=site.other.accession))
    for path in (
        f"Patient/{other.id}",
        f"ServiceRequest/{other_order.id}",
        f"ImagingStudy/{site.other.study_uid}",
        f"DiagnosticReport/{other_report.id}",
    ):
        assert outcome(site.fhir(path, who=clinician), 404).issue[0].code == "not-found", path
    site.read(Patient, f"Patient/{patient.id}", clinician)
    engine = create_engine(site.server.database_url)
    try:
        with engine.connect() as connection:
            audited = connection.execute(
                select(AuditEvent.event_id, AuditEvent.patient_id, AuditEvent.detail)
                .where(AuditEvent.user == clinician)
                .order_by(AuditEvent.sequence)
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    assert ("110112", "MRN7001") in {(event, patient_id) for event, patient_id, _ in audited}
    assert ("110110", "MRN7001", f"FHIR Patient/{patient.id} read") == tuple(audited[-1])
