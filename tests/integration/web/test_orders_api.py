"""`/api/orders` against a running `pedipacs serve`, on SQLite and PostgreSQL: an order placed
over HTTP is listed and appears on the Modality Worklist (DCMTK `findscu -W`), is rescheduled
and cancelled, and leaves the worklist; bad requests are refused naming their field and
change nothing; roles without the permissions get 403; every access is on the audit trail."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import create_engine, func, select

from pedipacs.db.engine import Database
from pedipacs.db.tables import AuditEvent, ImagingOrder, Patient, ScheduledStep
from pedipacs.model.origin import Origin
from pedipacs.security.accounts import AccountService
from pedipacs.security.permissions import Role
from support.databases import count_rows, server_on_fresh_database
from support.dcmtk import run
from support.server import TESTER, RunningServer

PASSWORD = "a long enough passphrase"
ROLES = {
    "technologist": Role.TECHNOLOGIST,
    "radiologist": Role.RADIOLOGIST,
    "clinician": Role.REFERRING_CLINICIAN,
    "auditor": Role.AUDITOR,
}
SPS = "ScheduledProcedureStepSequence"
STATION = "US_ED_1"


@dataclass
class Site:
    server: RunningServer
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = self.server.token if who == TESTER else self.tokens[who]
        return httpx.request(
            method,
            f"{self.server.http_url}{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )

    def count(self, table: type) -> int:
        return count_rows(self.server.database_url, table)

    def audit_since(self, sequence: int) -> list[tuple[Any, ...]]:
        """(event ID, action, outcome, patient ID, user) of every record after `sequence`."""
        engine = create_engine(self.server.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(
                        AuditEvent.event_id, AuditEvent.event_action, AuditEvent.outcome,
                        AuditEvent.patient_id, AuditEvent.user,
                    )
                    .where(AuditEvent.sequence > sequence)
                    .order_by(AuditEvent.sequence)
                ).all()  # fmt: skip
        finally:
            engine.dispose()
        return [tuple(row) for row in rows]

    def last_audit(self) -> int:
        engine = create_engine(self.server.database_url)
        try:
            with engine.connect() as connection:
                return int(connection.scalar(select(func.max(AuditEvent.sequence))) or 0)
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    dcmtk: None,
) -> Iterator[Site]:
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    with server_on_fresh_database(request.param, tmp_path_factory.mktemp("orders")) as server:
        database = Database(server.database_url)
        accounts = AccountService(database)
        tokens = {}
        for name, role in ROLES.items():
            accounts.create(name, frozenset({role}), Origin.cli("tests"), password=PASSWORD)
            tokens[name] = accounts.issue_token(name, "tests", 1, Origin.cli("tests"))
        database.dispose()
        yield Site(server, tokens)


def ultrasound(patient_id: str, **changes: Any) -> dict[str, Any]:
    """An order for an abdominal ultrasound of a toddler, without an accession number."""
    body: dict[str, Any] = {
        "patient": {
            "id": patient_id,
            "issuer": "CHILDRENS",
            "name": "NGUYEN^LAN",
            "birthDate": "2025-05-20",
            "sex": "F",
        },
        "priority": "STAT",
        "reason": "Suspected intussusception",
        "referringPhysician": "OKAFOR^ADA",
        "patientWeight": 11.2,
        "procedures": [
            {
                "description": "US abdomen",
                "code": {"value": "RPID1001", "scheme": "99PEDI", "meaning": "US abdomen"},
                "steps": [{"modality": "us", "stationAeTitle": STATION,
                           "start": "2026-12-01T09:30"}],
            }
        ],
        **changes,
    }  # fmt: skip
    return body


def worklist(server: RunningServer, keys: list[str], output_dir: Path) -> list[Dataset]:
    """`findscu -W` as a modality would ask; the response identifiers."""
    output_dir.mkdir(parents=True, exist_ok=True)
    args = ["findscu", "-W", "-aet", STATION, "-aec", server.ae_title, "-X", "-od",
            str(output_dir)]  # fmt: skip
    for key in [
        "PatientName=", "PatientID=", "AccessionNumber=", "StudyInstanceUID=",
        "RequestedProcedureDescription=", "RequestedProcedurePriority=",
        f"{SPS}[0].ScheduledStationAETitle=", f"{SPS}[0].ScheduledProcedureStepStartDate=",
        f"{SPS}[0].ScheduledProcedureStepStartTime=", f"{SPS}[0].Modality=",
        f"{SPS}[0].ScheduledProcedureStepStatus=", *keys,
    ]:  # fmt: skip
        args += ["-k", key]
    result = run([*args, "127.0.0.1", str(server.dicom_port)])
    assert result.returncode == 0, result.stderr[-4000:]
    return [dcmread(path) for path in sorted(output_dir.glob("rsp*.dcm"))]


def test_an_order_placed_over_http_is_listed_scheduled_rescheduled_and_cancelled(
    site: Site, tmp_path: Path
) -> None:
    before = site.last_audit()

    placed = site.call(TESTER, "POST", "/api/orders", json=ultrasound("MRN3001"))

    assert placed.status_code == 201, placed.text
    order = placed.json()
    accession = order["accessionNumber"]
    assert accession.startswith("PP") and len(accession) <= 16
    assert placed.headers["location"] == f"/api/orders/{accession}"
    assert order["status"] == "scheduled" and order["priority"] == "STAT"
    (study_uid,) = order["studyInstanceUids"]

    listed = site.call(TESTER, "GET", "/api/orders",
                       params={"status": "open", "modality": "US", "patient": "nguy"})  # fmt: skip
    assert listed.status_code == 200, listed.text
    (item,) = [o for o in listed.json()["orders"] if o["accessionNumber"] == accession]
    assert item["patient"] == {
        "id": "MRN3001", "issuer": "CHILDRENS", "name": "NGUYEN^LAN", "birthDate": "2025-05-20",
        "sex": "F", "isTemporary": False,
    }  # fmt: skip
    assert (item["modalities"], item["stationAeTitles"]) == (["US"], [STATION])
    assert item["scheduledStart"] == "2026-12-01T09:30:00"
    on_another_day = site.call(TESTER, "GET", "/api/orders", params={"date": "2026-12-02"})
    assert accession not in {o["accessionNumber"] for o in on_another_day.json()["orders"]}

    (scheduled,) = worklist(site.server, [f"AccessionNumber={accession}"], tmp_path / "placed")
    assert (scheduled.PatientID, scheduled.PatientName) == ("MRN3001", "NGUYEN^LAN")
    assert scheduled.StudyInstanceUID == study_uid
    assert scheduled.RequestedProcedurePriority == "STAT"
    step = scheduled[SPS][0]
    assert (step.ScheduledStationAETitle, step.Modality) == (STATION, "US")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20261201", "093000",
    )  # fmt: skip

    detail = site.call(TESTER, "GET", f"/api/orders/{accession}").json()
    assert detail["patientWeight"] == pytest.approx(11.2)
    assert detail["procedures"][0]["code"]["value"] == "RPID1001"
    # What GET answers is what PUT takes: move the exam to another room and day.
    assert detail["studies"] == []  # no image has arrived yet
    for key in ("status", "createdAt", "updatedAt", "studies"):
        del detail[key]
    detail["procedures"][0]["studyInstanceUid"] = None  # kept all the same
    step_body = detail["procedures"][0]["steps"][0]
    del step_body["status"]
    step_body.update(stationAeTitle="US_ED_2", start="2026-12-02T14:15")
    changed = site.call(TESTER, "PUT", f"/api/orders/{accession}", json=detail)
    assert changed.status_code == 200, changed.text
    assert changed.json()["studyInstanceUids"] == [study_uid]

    assert worklist(site.server, [f"AccessionNumber={accession}",
                                  f"{SPS}[0].ScheduledStationAETitle={STATION}"],
                    tmp_path / "old-room") == []  # fmt: skip
    (moved,) = worklist(site.server, [f"AccessionNumber={accession}"], tmp_path / "moved")
    assert moved[SPS][0].ScheduledStationAETitle == "US_ED_2"
    assert moved[SPS][0].ScheduledProcedureStepStartDate == "20261202"
    assert moved.StudyInstanceUID == study_uid

    cancelled = site.call(TESTER, "POST", f"/api/orders/{accession}/cancel",
                          json={"reason": "Symptoms resolved"})  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert worklist(site.server, [f"AccessionNumber={accession}"], tmp_path / "gone") == []
    after = site.call(TESTER, "GET", f"/api/orders/{accession}").json()
    assert after["status"] == "cancelled"
    assert after["procedures"][0]["steps"][0]["status"] == "CANCELLED"
    again = site.call(TESTER, "POST", f"/api/orders/{accession}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    too_late = site.call(TESTER, "PUT", f"/api/orders/{accession}", json=ultrasound("MRN3001"))
    assert too_late.status_code == 409

    trail = [(e, a, o, p) for e, a, o, p, user in site.audit_since(before) if user == TESTER]
    assert trail[:2] == [("110110", "C", 0, "MRN3001"), ("110109", "C", 0, "MRN3001")]
    assert ("110112", "E", 0, "MRN3001") in trail  # the list, of this one patient
    assert ("110109", "R", 0, "MRN3001") in trail  # the details
    assert ("110109", "U", 0, "MRN3001") in trail  # rescheduled
    assert ("110109", "D", 0, "MRN3001") in trail  # cancelled


def test_an_order_for_a_newborn_registers_the_temporary_identity_with_the_mother(
    site: Site,
) -> None:
    body = ultrasound("T-3002", accessionNumber="NB3002", priority="ASAP")
    body["patient"] = {"id": "T-3002", "issuer": "CHILDRENS", "name": "LEFEVRE^BABY GIRL",
                       "birthDate": "2026-11-24", "sex": "F", "isTemporary": True,
                       "mother": {"id": "MRN500", "issuer": "CHILDRENS"}}  # fmt: skip

    placed = site.call(TESTER, "POST", "/api/orders", json=body)

    assert placed.status_code == 201, placed.text
    assert placed.json()["accessionNumber"] == "NB3002"
    assert placed.json()["stepIds"] == ["NB3002"]
    patient = site.call(TESTER, "GET", "/api/orders/NB3002").json()["patient"]
    assert patient["isTemporary"] is True
    assert patient["mother"] == {"id": "MRN500", "issuer": "CHILDRENS"}


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    del body[key]
    return body


def _step(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body["procedures"][0]["steps"][0].update(changes)
    return body


def _procedure(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body["procedures"][0].update(changes)
    return body


def _patient(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body["patient"].update(changes)
    return body


BAD_BODIES = {
    "no patient": (lambda b: _without(b, "patient"), 400, "body.patient"),
    "empty patient ID": (lambda b: _patient(b, id=" "), 400, "body.patient.id"),
    "impossible birth date": (lambda b: _patient(b, birthDate="2025-02-30"), 400,
                              "body.patient.birthDate"),
    "unknown sex": (lambda b: _patient(b, sex="X"), 400, "body.patient.sex"),
    "unknown priority": (lambda b: {**b, "priority": "URGENT"}, 400, "body.priority"),
    "negative weight": (lambda b: {**b, "patientWeight": -3}, 400, "body.patientWeight"),
    "accession too long": (lambda b: {**b, "accessionNumber": "A" * 17}, 400,
                           "body.accessionNumber"),
    "accession with a backslash": (lambda b: {**b, "accessionNumber": "A\\1"}, 400,
                                   "accession number"),
    "no procedure": (lambda b: {**b, "procedures": []}, 400, "body.procedures"),
    "procedure without description or code": (
        lambda b: _procedure(b, description=None, code=None), 400, "procedures.0"),
    "no step": (lambda b: _procedure(b, steps=[]), 400, "body.procedures.0.steps"),
    "station AE title too long": (lambda b: _step(b, stationAeTitle="X" * 17), 400,
                                  "body.procedures.0.steps.0.stationAeTitle"),
    "not a modality": (lambda b: _step(b, modality="U$"), 400,
                       "body.procedures.0.steps.0.modality"),
    "not a start time": (lambda b: _step(b, start="tomorrow"), 400,
                         "body.procedures.0.steps.0.start"),
    "invalid Study Instance UID": (lambda b: _procedure(b, studyInstanceUid="1.2.abc"), 400,
                                   "Study Instance UID"),
    "unknown field": (lambda b: {**b, "colour": "blue"}, 400, "body.colour"),
    "accession taken": (lambda b: {**b, "accessionNumber": "TAKEN1"}, 409, "TAKEN1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_bad_order_is_refused_naming_its_field_and_changes_nothing(site: Site, case: str) -> None:
    if case == "accession taken":  # placed by the first run; a 409 on the second database
        site.call(TESTER, "POST", "/api/orders",
                  json=ultrasound("MRN3099", accessionNumber="TAKEN1"))  # fmt: skip
    spoil, status, field = BAD_BODIES[case]
    # A patient nobody registered yet: a refused order must not leave them behind.
    body = spoil(copy.deepcopy(ultrasound("MRN3100")))
    counts = [site.count(table) for table in (Patient, ImagingOrder, ScheduledStep)]
    audited = site.last_audit()

    refused = site.call(TESTER, "POST", "/api/orders", json=body)

    assert refused.status_code == status, refused.text
    assert field in refused.json()["detail"]
    assert [site.count(table) for table in (Patient, ImagingOrder, ScheduledStep)] == counts
    assert site.last_audit() == audited


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "finished"}, "status"), ({"date": "2026-12-32"}, "date"),
     ({"limit": "0"}, "limit"), ({"offset": "-1"}, "offset")],
)  # fmt: skip
def test_a_bad_list_query_is_refused_naming_the_parameter(
    site: Site, params: dict[str, str], field: str
) -> None:
    refused = site.call(TESTER, "GET", "/api/orders", params=params)

    assert refused.status_code == 400
    assert field in refused.json()["detail"]


def test_an_unknown_order_is_404_for_every_verb(site: Site) -> None:
    answers = [
        site.call(TESTER, "GET", "/api/orders/NOSUCH1"),
        site.call(TESTER, "PUT", "/api/orders/NOSUCH1", json=ultrasound("MRN3001")),
        site.call(TESTER, "POST", "/api/orders/NOSUCH1/cancel"),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404]
    assert all("NOSUCH1" in a.json()["detail"] for a in answers)


def test_a_change_for_another_accession_number_in_the_body_is_refused(site: Site) -> None:
    site.call(TESTER, "POST", "/api/orders", json=ultrasound("MRN3003", accessionNumber="PUT1"))

    refused = site.call(TESTER, "PUT", "/api/orders/PUT1",
                        json=ultrasound("MRN3003", accessionNumber="PUT2"))  # fmt: skip

    assert refused.status_code == 400
    assert "accessionNumber" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("who", "reads", "writes"),
    [("technologist", True, True), ("radiologist", False, False),
     ("clinician", False, False), ("auditor", False, False)],
)  # fmt: skip
def test_reading_needs_the_worklist_or_manage_orders_and_writing_manage_orders(
    site: Site, who: str, reads: bool, writes: bool
) -> None:
    audited = site.last_audit()
    accession = f"ROLE-{who[:8].upper()}"

    listed = site.call(who, "GET", "/api/orders")
    placed = site.call(who, "POST", "/api/orders",
                       json=ultrasound(f"MRN-{who[:8]}", accessionNumber=accession))  # fmt: skip
    cancelled = site.call(who, "POST", f"/api/orders/{accession}/cancel")

    assert listed.status_code == (200 if reads else 403)
    assert placed.status_code == (201 if writes else 403), placed.text
    assert cancelled.status_code == (200 if writes else 403)
    events = [(e, o) for e, _, o, _, user in site.audit_since(audited) if user == who]
    if not reads:
        assert events.count(("110113", 4)) == 3  # each refusal is a security alert
    else:
        assert ("110112", 0) in events and ("110109", 0) in events


def test_without_credentials_the_api_answers_401_and_the_pages_send_to_sign_in(
    site: Site,
) -> None:
    api = httpx.get(f"{site.server.http_url}/api/orders", timeout=30)
    page = httpx.get(f"{site.server.http_url}/orders", headers={"Accept": "text/html"},
                     timeout=30)  # fmt: skip

    assert api.status_code == 401
    assert page.status_code == 303 and page.headers["location"].startswith("/signin?next=")
