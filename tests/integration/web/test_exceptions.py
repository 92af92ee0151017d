"""Reconciliation and the exceptions list against a real `pedipacs serve`, on both databases:
orders placed through the RIS services (tests/support/worklist.py), images sent with DCMTK's
storescu as a modality would, the exceptions read and resolved through `/api/exceptions`, the
result checked with findscu and QIDO-RS. Then the page itself, in Chromium at a tablet's size:
both identities side by side, one exception dismissed, another attached after the
confirmation step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect
from pydicom import dcmread

from pedipacs.db.engine import Database
from pedipacs.model.origin import Origin
from pedipacs.model.ris import OrderStatus
from pedipacs.ris.orders import OrderService
from pedipacs.security.accounts import AccountService
from pedipacs.security.permissions import Role
from support.browser import (
    TABLET,
    assert_no_sideways_scroll,
    assert_touch_targets,
    open_signed_in,
)
from support.dcmtk import findscu, storescu
from support.files import PYDICOM_TEST_FILES
from support.server import TESTER, RunningServer, start_server
from support.worklist import ISSUER, schedule_on

STRANGER_ID = "MRN2999"  # a child with no order: the modality picked the wrong worklist item
US_ORDER_UID = "2.25.1001"  # order A1001, NGUYEN
WRONG_CHILD_UID = "2.25.7001"
NO_ORDER_UID = "2.25.7002"


def write_study(
    folder: Path,
    study_uid: str,
    *,
    patient_id: str,
    name: str,
    accession: str,
    images: int = 2,
) -> list[Path]:
    """A small CT study as a modality writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, images + 1):
        dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
        dataset.PatientID = patient_id
        dataset.IssuerOfPatientID = ISSUER
        dataset.PatientName = name
        dataset.AccessionNumber = accession
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = f"{study_uid}.1"
        dataset.SOPInstanceUID = f"{study_uid}.1.{number}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        path = folder / f"{study_uid}-{number}.dcm"
        dataset.save_as(path)
        paths.append(path)
    return paths


def send_studies(server: RunningServer, folder: Path) -> None:
    """Three studies: NGUYEN's ultrasound order by its Study Instance UID (matched), a child
    sent under OKORO's accession number A1002 (another patient), and one with no order."""
    files = [
        *write_study(folder, US_ORDER_UID, patient_id="MRN2001", name="NGUYEN^LAN",
                     accession="A1001"),
        *write_study(folder, WRONG_CHILD_UID, patient_id=STRANGER_ID, name="STRANGER^SAM",
                     accession="A1002"),
        *write_study(folder, NO_ORDER_UID, patient_id=STRANGER_ID, name="STRANGER^SAM",
                     accession="Z9", images=1),
    ]  # fmt: skip
    sent = storescu(server, files)
    assert sent.returncode == 0, sent.stderr[-4000:]


def order_status(database_url: str, accession: str) -> OrderStatus:
    database = Database(database_url)
    try:
        return OrderService(database).get(accession).status
    finally:
        database.dispose()


def clinician_token(database_url: str) -> str:
    """A referring clinician: may search images, may not manage orders."""
    database = Database(database_url)
    try:
        accounts = AccountService(database)
        origin = Origin.cli("tests")
        accounts.create(
            "dr.okafor",
            frozenset({Role.REFERRING_CLINICIAN}),
            origin,
            password="a long enough secret phrase",
        )
        return accounts.issue_token("dr.okafor", "tests", 1, origin)
    finally:
        database.dispose()


@pytest.fixture
def scheduled_server(server: RunningServer, dcmtk: None) -> Iterator[RunningServer]:
    schedule_on(server.database_url)
    yield server


def test_images_of_another_child_wait_on_the_exceptions_list_until_attached_with_confirmation(
    scheduled_server: RunningServer, tmp_path: Path
) -> None:
    server = scheduled_server
    api = f"{server.http_url}/api/exceptions"
    send_studies(server, tmp_path / "studies")

    listed = server.get(api)

    assert listed.status_code == 200, listed.text
    items = {item["studyInstanceUid"]: item for item in listed.json()["items"]}
    assert set(items) == {WRONG_CHILD_UID, NO_ORDER_UID}  # NGUYEN's study joined its order
    assert order_status(server.database_url, "A1001") is OrderStatus.ARRIVED
    wrong = items[WRONG_CHILD_UID]
    assert (wrong["reason"], wrong["state"], wrong["instances"]) == ("patient-differs", "open", 2)
    assert wrong["patient"]["patientId"] == STRANGER_ID
    assert wrong["order"]["accessionNumber"] == "A1002"
    assert wrong["order"]["patient"]["patientId"] == "MRN2002"
    assert items[NO_ORDER_UID]["reason"] == "no-order"
    assert items[NO_ORDER_UID]["order"] is None
    assert order_status(server.database_url, "A1002") is OrderStatus.SCHEDULED

    refused = server.post(f"{api}/{wrong['id']}/attach", json={"accession_number": "A1002"})
    assert refused.status_code == 409
    assert "OKORO^CHIDI^EMEKA" in refused.json()["detail"]
    assert "STRANGER^SAM" in refused.json()["detail"]

    attached = server.post(
        f"{api}/{wrong['id']}/attach",
        json={"accessionNumber": "A1002", "confirmOtherPatient": True},
    )

    assert attached.status_code == 200, attached.text
    assert attached.json()["state"] == "attached"
    assert attached.json()["patient"]["patientId"] == "MRN2002"
    assert order_status(server.database_url, "A1002") is OrderStatus.ARRIVED
    result, found = findscu(
        server,
        ["QueryRetrieveLevel=STUDY", "PatientID=MRN2002", "StudyInstanceUID", "PatientName"],
        tmp_path / "find",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert [(str(r.StudyInstanceUID), str(r.PatientName)) for r in found] == [
        (WRONG_CHILD_UID, "OKORO^CHIDI^EMEKA")
    ]
    qido = server.get(f"{server.http_url}/dicomweb/studies", params={"PatientID": "MRN2002"})
    assert qido.status_code == 200, qido.text
    assert [study["0020000D"]["Value"][0] for study in qido.json()] == [WRONG_CHILD_UID]
    _, strangers = findscu(
        server,
        ["QueryRetrieveLevel=STUDY", f"PatientID={STRANGER_ID}", "StudyInstanceUID"],
        tmp_path / "find-stranger",
    )
    assert [str(r.StudyInstanceUID) for r in strangers] == [NO_ORDER_UID]

    again = server.post(f"{api}/{wrong['id']}/dismiss", json={"note": "too late"})
    assert again.status_code == 409
    left = server.get(api).json()["items"]
    assert [item["studyInstanceUid"] for item in left] == [NO_ORDER_UID]
    clinician = {"Authorization": f"Bearer {clinician_token(server.database_url)}"}
    assert httpx.get(api, headers=clinician).status_code == 403
    forbidden = httpx.post(
        f"{api}/{left[0]['id']}/dismiss", json={"note": "not mine"}, headers=clinician
    )
    assert forbidden.status_code == 403


# -- the page, in Chromium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory, dcmtk: None) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("exceptions_page")
    running = start_server(folder / "server", f"sqlite:///{folder / 'index.sqlite3'}")
    try:
        schedule_on(running.database_url)
        send_studies(running, folder / "studies")
        yield running
    finally:
        running.stop()


def test_the_exceptions_page_resolves_exceptions_on_a_tablet(
    browser: Browser, page_server: RunningServer, artifacts: Path
) -> None:
    server = page_server
    context = browser.new_context(viewport=TABLET, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        refused: list[str] = []  # what the strict CSP blocked, or a resource missing
        page.on("console", lambda m: refused.append(m.text) if "Security" in m.text else None)
        page.on(
            "response",
            lambda r: (
                refused.append(r.url)
                if r.status >= 400 and not r.url.endswith("/favicon.ico")
                else None
            ),
        )
        open_signed_in(page, server, "/exceptions")
        cards = page.locator("article.exception")
        expect(cards).to_have_count(2)
        wrong = page.locator("article.exception[data-reason='patient-differs']")
        no_order = page.locator("article.exception[data-reason='no-order']")

        # Both identities side by side, nothing wider than the screen, fingers-sized targets.
        images_box = wrong.locator("section.identity.images").bounding_box()
        order_box = wrong.locator("section.identity.order").bounding_box()
        assert images_box is not None and order_box is not None
        assert abs(images_box["y"] - order_box["y"]) < 2 and order_box["x"] > images_box["x"]
        expect(wrong.locator("section.identity.order .patient-id")).to_contain_text("MRN2002")
        expect(wrong.locator("section.identity.images .patient-id")).to_contain_text(STRANGER_ID)
        assert_no_sideways_scroll(page)
        assert_touch_targets(page, "main button, main input, main a")
        page.screenshot(path=artifacts / "exceptions-tablet-768.png", full_page=True)

        # Dismiss: a note is asked for, then the card leaves the list.
        no_order.get_by_label("Reason to dismiss").fill("test images from the phantom")
        no_order.get_by_role("button", name="Dismiss").click()
        expect(page.locator("#exceptions-notice")).to_contain_text("dismissed")
        expect(cards).to_have_count(1)

        # Attach to another child's order: a second step names both before anything moves.
        expect(wrong.get_by_label("Accession number of the order")).to_have_value("A1002")
        wrong.get_by_role("button", name="Attach to order").click()
        expect(page.locator("h1")).to_have_text("Move the images to another patient?")
        expect(page.locator("#confirm-message")).to_contain_text("OKORO^CHIDI^EMEKA")
        page.screenshot(path=artifacts / "exceptions-confirm-tablet-768.png", full_page=True)
        page.locator("#confirm-move").click()
        expect(page.locator("#exceptions-notice")).to_contain_text("attached to its order")
        expect(cards).to_have_count(0)
        expect(page.locator("#exceptions-count")).to_have_text("No open exceptions.")
        assert refused == []
    finally:
        context.close()

    resolved = {
        item["studyInstanceUid"]: (item["state"], item["resolvedBy"])
        for state in ("attached", "dismissed")
        for item in server.get(f"{server.http_url}/api/exceptions", params={"state": state}).json()[
            "items"
        ]
    }
    assert resolved == {
        WRONG_CHILD_UID: ("attached", TESTER),
        NO_ORDER_UID: ("dismissed", TESTER),
    }
