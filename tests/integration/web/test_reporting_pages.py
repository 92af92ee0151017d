"""The reading and reporting pages in real Chromium, against a real `pedipacs serve` (SQLite):
the reading worklist, the report editor, a child's imaging timeline, critical results,
turnaround times and the background jobs; and their refusals over plain HTTP.

The exams are made through the server's own doors: orders placed with `POST /api/orders`,
their images stored with STOW-RS, two reports signed with the JSON API (each with a critical
finding). Released reports go to an HL7 receiver that is not listening, with one attempt per
job, so their ORU^R01 jobs fail and wait for an administrator's retry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from pydicom import dcmread
from sqlalchemy import create_engine, update

from pedipacs.db.base import utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import ImagingOrder
from pedipacs.model.age import paediatric_age
from pedipacs.model.origin import Origin
from pedipacs.model.ris import PatientIdentity
from pedipacs.security.access import AccessPolicy
from pedipacs.security.accounts import AccountService
from pedipacs.security.permissions import Role
from support.browser import TABLET, assert_no_sideways_scroll, assert_touch_targets, open_signed_in
from support.reporting import FINDINGS_TEXT, ISSUER, image
from support.server import RunningServer, free_port, start_server

UID_ROOT = "1.2.826.0.1.3680043.10.7"
BOUNDARY = "r3porting"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
ACCOUNTS = {
    "dr.osei": Role.RADIOLOGIST,
    "dr.okafor": Role.REFERRING_CLINICIAN,
    "auditor": Role.AUDITOR,
}
TOUCH_CONTROLS = "main a, main button, main input, main select, main textarea"
JOB_TIMEOUT = 30.0


@dataclass(frozen=True)
class Child:
    patient_id: str
    name: str
    birth_date: str

    @property
    def identity(self) -> PatientIdentity:
        return PatientIdentity(self.patient_id, ISSUER)


LAN = Child("MRN7001", "NGUYEN^LAN", "2019-05-20")
CHIDI = Child("MRN7002", "OKORO^CHIDI", "2024-01-10")
AMARA = Child("MRN7003", "BELLO^AMARA", "2015-02-01")
TOMAS = Child("MRN7004", "SILVA^TOMAS", "2021-08-30")
ZOE = Child("MRN7005", "MARTIN^ZOE", "2012-11-11")


@dataclass
class Site:
    server: RunningServer
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.server.http_url}{path}", headers=headers,
                             timeout=30, **kwargs)  # fmt: skip


# -- the exams, made through the doors -------------------------------------------------------


def place(server: RunningServer, child: Child, accession: str, **order: Any) -> str:
    """An order for `child`; its Study Instance UID."""
    study_uid = f"{UID_ROOT}.{accession[1:]}"
    body = {
        "accessionNumber": accession,
        "patient": {"id": child.patient_id, "issuer": ISSUER, "name": child.name,
                    "birthDate": child.birth_date, "sex": "F"},
        "referringPhysician": "OKAFOR^ADA",
        "reason": "Right iliac fossa pain, fever",
        "procedures": [{"description": "US abdomen", "studyInstanceUid": study_uid,
                        "steps": [{"modality": "US", "stationAeTitle": "US_ED_1"}]}],
        **order,
    }  # fmt: skip
    placed = server.post(f"{server.http_url}/api/orders", json=body)
    assert placed.status_code == 201, placed.text
    return study_uid


def stow(
    server: RunningServer, child: Child, accession: str, study_uid: str, on: date | None = None
) -> None:
    """Store one image of the exam, taken `on` (today by default)."""
    dataset = dcmread(BytesIO(image(child.identity, child.name, accession, study_uid)))
    dataset.StudyDate = (on or date.today()).strftime("%Y%m%d")
    buffer = BytesIO()
    dataset.save_as(buffer)
    data = buffer.getvalue()
    body = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    stored = server.post(
        f"{server.http_url}/dicomweb/studies", content=body, headers={"Content-Type": STOW_TYPE}
    )
    assert stored.status_code == 200, stored.text


def exam(server: RunningServer, child: Child, accession: str, **order: Any) -> str:
    study_uid = place(server, child, accession, **order)
    stow(server, child, accession, study_uid)
    return study_uid


def sign_final(server: RunningServer, accession: str, critical_finding: str) -> None:
    signed = server.post(
        f"{server.http_url}/api/reports/{accession}/sign",
        json={"sections": FINDINGS_TEXT, "final": True, "criticalFinding": critical_finding},
    )
    assert signed.status_code == 200, signed.text


def accounts_on(database_url: str) -> dict[str, str]:
    """The accounts and their bearer tokens; Tomas is in the care of dr.okafor."""
    database = Database(database_url)
    try:
        accounts, origin = AccountService(database), Origin.cli("tests")
        tokens = {}
        for name, role in ACCOUNTS.items():
            accounts.create(name, frozenset({role}), origin, password="a long enough phrase")
            tokens[name] = accounts.issue_token(name, "tests", 1, origin)
        AccessPolicy(database).add_to_care_team("dr.okafor", TOMAS.patient_id, origin)
        return tokens
    finally:
        database.dispose()


def waiting_since_two_days(database_url: str, accession: str) -> None:
    """The images of `accession` arrived two days ago: past the routine target."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(ImagingOrder)
                .where(ImagingOrder.accession_number == accession)
                .values(images_arrived_at=utc_now() - timedelta(days=2))
            )
    finally:
        engine.dispose()


def failed_jobs(site: Site) -> list[dict[str, Any]]:
    """The failed jobs, once the worker has failed the ORU^R01 of both signed reports."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        jobs = site.call("tester", "GET", "/api/jobs", params={"state": "failed"}).json()["jobs"]
        if len(jobs) >= 2 or time.monotonic() > deadline:
            return list(jobs)
        time.sleep(0.2)  # the polling interval of a probe, not a wait for an outcome


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, dcmtk: None) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("reporting_pages")
    running = start_server(
        folder / "server",
        f"sqlite:///{folder / 'index.sqlite3'}",
        extra_env={
            "PEDIPACS_HL7_REPORT_RECEIVERS": f'["127.0.0.1:{free_port()}"]',  # nobody listens
            "PEDIPACS_JOB_MAX_ATTEMPTS": "1",
        },
    )
    try:
        tokens = {"tester": running.token, **accounts_on(running.database_url)}
        site = Site(running, tokens)
        exam(running, AMARA, "R1003")  # waiting longest; read by a colleague
        exam(running, LAN, "R1001")
        # An earlier study of Lan, without an order here: a prior.
        stow(running, LAN, "OLD1", f"{UID_ROOT}.900", date.today() - timedelta(days=400))
        exam(running, CHIDI, "R1002", priority="STAT", orderingDepartment="ED", patientClass="E")
        exam(running, TOMAS, "R1004")
        exam(running, ZOE, "R1005")
        claimed = site.call("dr.osei", "POST", "/api/reading-worklist/R1003/claim")
        assert claimed.status_code == 200, claimed.text
        sign_final(running, "R1004", "Perforated appendix with abscess")
        sign_final(running, "R1005", "Intussusception")
        waiting_since_two_days(running.database_url, "R1003")
        yield site
    finally:
        running.stop()


@pytest.fixture
def tablet(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=TABLET, has_touch=True, is_mobile=True, locale="en-GB")
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- in Chromium --------------------------------------------------------------------------------


def test_the_worklist_puts_stat_first_and_read_sign_final_shows_the_signed_report(
    page: Page, site: Site, artifacts: Path
) -> None:
    server = site.server
    open_signed_in(page, server, "/reading")
    rows = page.locator("#reading-table tbody tr")
    order = [rows.nth(i).get_attribute("data-accession") for i in range(rows.count())]
    assert order[0] == "R1002", order  # STAT, from the emergency department
    assert order.index("R1003") < order.index("R1001")  # outpatients: longest waiting first
    stat = page.locator("tr[data-accession='R1002']")
    expect(stat.locator(".badge.urgency")).to_have_text("STAT")
    expect(stat.locator("th")).to_contain_text("OKORO, CHIDI")
    lan = page.locator("tr[data-accession='R1001']")
    lan_age = paediatric_age(date.fromisoformat(LAN.birth_date), date.today())
    expect(lan.locator("td[data-label='Priors']")).to_have_text("1")
    expect(lan.locator("td[data-label='Age, sex']")).to_have_text(f"{lan_age} · F")
    expect(lan.locator("td[data-label='Waiting']")).to_contain_text("waiting ")
    colleagues = page.locator("tr[data-accession='R1003']")
    expect(colleagues.locator(".claimed")).to_have_text("claimed by dr.osei")
    assert_no_sideways_scroll(page)
    page.screenshot(path=artifacts / "reading-worklist.png", full_page=True)

    # The colleague's exam: the list again, with the reason.
    colleagues.get_by_role("button", name="Read").click()
    expect(page.locator("#reading-error")).to_contain_text("being read by dr.osei")

    lan.get_by_role("button", name="Read").click()
    expect(page).to_have_url(f"{server.http_url}/reports/R1001")
    expect(page.locator("#claim")).to_contain_text("You are reading this exam")
    expect(page.locator("#patient-age")).to_have_text(lan_age)
    expect(page.locator("#priors li")).to_have_count(1)
    images = page.request.get(f"{server.http_url}/reading/R1001/images", max_redirects=0)
    expected = f"/viewer/viewer?StudyInstanceUIDs={UID_ROOT}.1001,{UID_ROOT}.900"
    assert images.headers["location"] == expected

    # Given back to the worklist, then taken again.
    page.get_by_role("button", name="Release: back to the worklist").click()
    expect(page.locator("#reading-done")).to_have_text("Exam R1001 is back on the worklist.")
    expect(lan.locator(".claimed")).to_have_count(0)
    lan.get_by_role("button", name="Read").click()

    page.get_by_label("Template").select_option("us-appendicitis")
    page.get_by_role("button", name="Use this template").click()
    expect(page.get_by_label("Findings")).to_contain_text("Maximal outer diameter")
    for key, text in FINDINGS_TEXT.items():
        page.locator(f"#section-{key}").fill(text)
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#report-done")).to_have_text("The draft was saved.")
    expect(page.locator("#report-status")).to_have_text("draft")
    expect(page.get_by_label("Template")).to_have_count(0)  # chosen for good
    expect(page.locator("#section-impression")).to_have_value(FINDINGS_TEXT["impression"])
    page.get_by_role("button", name="Sign final").click()

    expect(page.locator("#report-done")).to_contain_text("Signed final")
    expect(page.locator("#report-status")).to_have_text("final")
    expect(page.locator("#signed-report")).to_contain_text("Acute appendicitis.")
    expect(page.locator("#signature")).to_contain_text("Signed by tester")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    pdf = page.request.get(f"{server.http_url}{page.locator('#report-pdf').get_attribute('href')}")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    page.screenshot(path=artifacts / "report-signed.png", full_page=True)

    page.get_by_label("Addendum", exact=True).fill("Small amount of free fluid in the pelvis.")
    page.get_by_role("button", name="Add addendum").click()
    expect(page.locator("#report-status")).to_have_text("amended")
    expect(page.locator("#signed-report .addendum")).to_contain_text("free fluid")

    page.goto(f"{server.http_url}/patients/{LAN.patient_id}?issuer={ISSUER}")
    report = page.locator("li.exam[data-accession='R1001'] .timeline-report")
    expect(report).to_contain_text("Non-compressible appendix")
    expect(report).to_contain_text("free fluid")


def test_signing_without_an_impression_is_refused_and_keeps_the_text(
    tablet: Page, site: Site, artifacts: Path
) -> None:
    page = tablet
    open_signed_in(page, site.server, "/reports/R1002")
    for key, text in FINDINGS_TEXT.items():
        page.locator(f"#section-{key}").fill("" if key == "impression" else text)
    page.get_by_label("Critical finding (optional)").fill("Free air")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign final").click()
    assert answer.value.status == 400
    expect(page.locator("#report-error")).to_contain_text("Impression must be filled in first")
    expect(page.locator("#section-findings")).to_have_value(FINDINGS_TEXT["findings"])
    expect(page.get_by_label("Critical finding (optional)")).to_have_value("Free air")
    assert_no_sideways_scroll(page)
    assert_touch_targets(page, TOUCH_CONTROLS)
    page.screenshot(path=artifacts / "report-refused-tablet.png", full_page=True)

    # A form posted with the session cookie but without the CSRF token: refused.
    forged = page.request.post(f"{site.server.http_url}/reports/R1002",
                               form={"action": "save", "section-findings": "x"})  # fmt: skip
    assert forged.status == 403


def test_the_worklist_is_cards_on_a_tablet(tablet: Page, site: Site, artifacts: Path) -> None:
    page = tablet
    open_signed_in(page, site.server, "/reading")
    card = page.locator("#reading-table tbody tr").first
    expect(card).to_be_visible()
    assert card.evaluate("row => getComputedStyle(row).display") == "grid"
    assert_no_sideways_scroll(page)
    assert_touch_targets(page, TOUCH_CONTROLS)
    page.screenshot(path=artifacts / "reading-worklist-tablet.png", full_page=True)
    page.get_by_label("Modality").select_option("US")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/reading\?modality=US&"))
    expect(page.get_by_label("Modality")).to_have_value("US")
    expect(page.locator("#reading-count")).to_contain_text("waiting")


def test_the_timeline_shows_the_report_and_acknowledges_its_critical_result(
    tablet: Page, site: Site, artifacts: Path
) -> None:
    page = tablet
    open_signed_in(page, site.server, "/patients")
    page.get_by_label("Patient ID or name").fill("SILVA")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name="SILVA, TOMAS").click()
    expect(page.locator("#patient-name")).to_have_text("SILVA, TOMAS")
    exam = page.locator("li.exam[data-accession='R1004']")
    expect(exam.locator(".report-section[data-section='impression']")).to_contain_text(
        "Acute appendicitis."
    )
    expect(exam.locator(".signature")).to_contain_text("Signed by tester")
    expect(exam.get_by_role("link", name="Open images")).to_have_attribute(
        "href", f"/viewer/viewer?StudyInstanceUIDs={UID_ROOT}.1004"
    )
    critical = page.locator("#open-critical")
    expect(critical).to_contain_text("Perforated appendix with abscess")
    assert_no_sideways_scroll(page)
    assert_touch_targets(page, TOUCH_CONTROLS)
    page.screenshot(path=artifacts / "timeline-tablet.png", full_page=True)

    critical.get_by_label("Note (optional)").fill("Told Dr Okafor by phone")
    critical.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#timeline-done")).to_have_text("The critical result was acknowledged.")
    expect(page.locator("#open-critical")).to_have_count(0)
    expect(exam.locator(".critical-line")).to_contain_text("acknowledged by tester")


def test_an_acknowledged_critical_result_leaves_the_list(
    page: Page, site: Site, artifacts: Path
) -> None:
    open_signed_in(page, site.server, "/critical-results")
    zoe = page.locator("li.critical[data-accession='R1005']")
    expect(zoe).to_contain_text("Intussusception")
    expect(zoe).to_contain_text("MARTIN, ZOE")
    page.screenshot(path=artifacts / "critical-results.png", full_page=True)
    zoe.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#critical-done")).to_have_text("The critical result was acknowledged.")
    expect(page.locator("li.critical[data-accession='R1005']")).to_have_count(0)


def test_turnaround_and_jobs_render_and_a_failed_job_is_retried(
    page: Page, site: Site, artifacts: Path
) -> None:
    failed = failed_jobs(site)
    assert len(failed) >= 2, failed
    open_signed_in(page, site.server, "/turnaround")
    expect(page.locator("#overall tbody tr")).to_have_count(1)
    expect(page.locator("#by-priority tbody tr[data-group='STAT']")).to_have_count(1)
    overdue = page.locator("#overdue tr[data-accession='R1003']")
    expect(overdue.locator("td[data-label='Target']")).to_have_text("24:00")
    expect(overdue.locator("td[data-label='Over by']")).to_have_text("1 d")
    page.screenshot(path=artifacts / "turnaround.png", full_page=True)

    page.goto(f"{site.server.http_url}/admin/jobs?state=failed")
    job = page.locator(f"tr.job[data-job-id='{failed[0]['id']}']")
    expect(job.locator("td[data-label='Last error']")).not_to_be_empty()
    page.screenshot(path=artifacts / "jobs.png", full_page=True)
    job.get_by_role("button", name="Retry").click()
    expect(page.locator("#jobs-done")).to_contain_text(f"Job {failed[0]['id']} is due again")


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "method", "path"),
    [
        ("auditor", "GET", "/reading"),
        ("auditor", "GET", "/patients"),
        ("auditor", "GET", "/critical-results"),
        ("auditor", "GET", "/reports/R1004"),
        ("dr.okafor", "GET", "/reading"),
        ("dr.okafor", "POST", "/reading/R1002/claim"),
        ("dr.okafor", "POST", "/reports/R1002"),
        ("dr.okafor", "GET", "/turnaround"),
        ("dr.okafor", "GET", "/admin/jobs"),
        ("dr.osei", "GET", "/admin/jobs"),
        ("dr.osei", "POST", "/admin/jobs/1/retry"),
        ("auditor", "POST", "/critical-results/1/acknowledge"),
    ],
)
def test_a_page_without_its_permission_answers_403(
    site: Site, who: str, method: str, path: str
) -> None:
    answer = site.call(who, method, path, data={"action": "save"} if method == "POST" else None)
    assert answer.status_code == 403, answer.text


def test_a_clinician_reads_released_reports_of_their_patients_only(site: Site) -> None:
    timeline = site.call("dr.okafor", "GET", f"/patients/{TOMAS.patient_id}",
                         params={"issuer": ISSUER})  # fmt: skip
    assert timeline.status_code == 200
    assert "Non-compressible appendix" in timeline.text
    assert "Perforated appendix with abscess" in timeline.text
    report = site.call("dr.okafor", "GET", "/reports/R1004")
    assert report.status_code == 200
    assert "Acute appendicitis." in report.text
    assert "Sign final" not in report.text and "Add addendum" not in report.text
    assert site.call("dr.okafor", "GET", f"/patients/{ZOE.patient_id}",
                     params={"issuer": ISSUER}).status_code == 404  # fmt: skip
    assert site.call("dr.okafor", "GET", "/reports/R1005").status_code == 404
    assert site.call("dr.osei", "GET", "/turnaround").status_code == 200


def test_refusals_show_the_service_message_with_the_api_status(site: Site) -> None:
    claimed = site.call("tester", "POST", "/reading/R1003/claim")
    assert claimed.status_code == 409
    assert "being read by dr.osei" in claimed.text
    text = {f"section-{key}": value for key, value in FINDINGS_TEXT.items()}
    signed_already = site.call("tester", "POST", "/reports/R1004", data={
        "action": "final", "template": "general", "revision": "1", **text})  # fmt: skip
    assert signed_already.status_code == 409
    assert "a signed report is not changed" in signed_already.text
    empty = site.call("tester", "POST", "/reports/R1002", data={
        "action": "preliminary", **text, "section-impression": " "})  # fmt: skip
    assert empty.status_code == 400
    assert "Impression must be filled in first" in empty.text
    assert "Non-compressible appendix" in empty.text  # the text typed, kept
    unknown = site.call("tester", "GET", "/reports/NOPE")
    assert unknown.status_code == 404
    template = site.call("tester", "GET", "/reports/R1002", params={"template": "nope"})
    assert template.status_code == 400
    jobs = site.call("tester", "GET", "/admin/jobs", params={"state": "sleeping"})
    assert jobs.status_code == 400
    period = site.call("tester", "GET", "/turnaround", params={"since": "2026-02-30"})
    assert period.status_code == 400
