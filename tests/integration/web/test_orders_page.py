"""The orders pages in real Chromium at a tablet's size (820x1180, portrait), against a real
`pedipacs serve`: sign in, place an order through the form (a refused form first), find it
among the cards of the list, reschedule it, cancel it after the confirmation page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, ViewportSize, expect

from support.server import TESTER, TESTER_PASSWORD, RunningServer, start_server

TABLET: ViewportSize = {"width": 820, "height": 1180}
MIN_TOUCH_PX = 44


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dcmtk: None) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("orders_page")
    running = start_server(folder / "server", f"sqlite:///{folder / 'index.sqlite3'}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def tablet(page: Page) -> Page:
    page.set_viewport_size(TABLET)
    return page


def sign_in_to(page: Page, server: RunningServer, path: str) -> None:
    page.goto(f"{server.http_url}{path}")
    expect(page).to_have_url(f"{server.http_url}/signin?next={path.replace('/', '%2F')}")
    page.get_by_label("Username").fill(TESTER)
    page.get_by_label("Password").fill(TESTER_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server.http_url}{path}")


def fill_order(page: Page, *, patient_id: str, newborn: bool = False) -> None:
    page.get_by_label("Patient ID", exact=True).fill(patient_id)
    page.get_by_label("Issuer of the ID").fill("CHILDRENS")
    page.get_by_label("Family name").fill("OKORO")
    page.get_by_label("Given name(s)").fill("CHIDI")
    page.get_by_label("Birth date").fill("2016-03-02")
    page.get_by_label("Sex").select_option("M")
    page.get_by_label("Weight (kg)").fill("32")
    page.get_by_label("Newborn with a temporary ID").set_checked(newborn)
    page.get_by_label("Procedure", exact=True).fill("CT head")
    page.get_by_label("Modality").select_option("CT")
    page.get_by_label("Station AE title").fill("CT_MAIN")
    page.get_by_label("Date", exact=True).fill("2026-12-03")
    page.get_by_label("Time", exact=True).fill("14:00")
    page.get_by_role("radio", name="STAT").check()
    page.get_by_label("Reason for the examination").fill("Head injury, fell from a swing")
    page.get_by_label("Referring physician").fill("OKAFOR^ADA")


def test_an_order_is_placed_found_rescheduled_and_cancelled_on_a_tablet(
    tablet: Page, server: RunningServer, artifacts: Path
) -> None:
    page = tablet
    problems: list[str] = []
    page.on("console", lambda m: _keep_error(m, problems))
    sign_in_to(page, server, "/orders/new")

    # A newborn's temporary identity without the mother's ID: refused, nothing typed is lost.
    fill_order(page, patient_id="T-4001", newborn=True)
    page.get_by_role("button", name="Place the order").click()
    expect(page.locator("#order-error")).to_contain_text("Mother's patient ID")
    expect(page.get_by_label("Patient ID", exact=True)).to_have_value("T-4001")
    expect(page.get_by_label("Procedure", exact=True)).to_have_value("CT head")

    fill_order(page, patient_id="MRN4001")
    page.screenshot(path=artifacts / "orders-new-tablet.png", full_page=True)
    page.get_by_role("button", name="Place the order").click()
    expect(page.locator("#order-done")).to_have_text("The order was placed; it is on the worklist.")
    accession = page.url.split("/orders/")[1].split("?")[0]
    expect(page.locator("#order-status")).to_have_text("scheduled")
    expect(page.locator("#patient-name")).to_have_text("OKORO, CHIDI")

    page.goto(f"{server.http_url}/orders")
    card = page.locator("#order-table tbody tr", has_text=accession)
    expect(card).to_have_count(1)
    expect(card.locator("th")).to_contain_text("OKORO, CHIDI")
    expect(card.locator("td[data-label='Scheduled']")).to_have_text("2026-12-03 14:00")
    expect(card.locator("td[data-label='Priority']")).to_have_text("STAT")
    # A card, not a table row, at this width; and a target a finger can hit.
    assert card.evaluate("row => getComputedStyle(row).display") == "grid"
    link = card.get_by_role("link", name="OKORO, CHIDI")
    box = link.bounding_box()
    assert box is not None and box["height"] >= MIN_TOUCH_PX
    new_order = page.get_by_role("link", name="New order").bounding_box()
    assert new_order is not None and new_order["height"] >= MIN_TOUCH_PX
    page.screenshot(path=artifacts / "orders-list-tablet.png", full_page=True)

    link.click()
    page.get_by_label("Time").fill("15:30")
    page.get_by_label("Station AE title").fill("CT_ED")
    page.get_by_role("button", name="Save the schedule").click()
    expect(page.locator("#order-done")).to_have_text("The schedule was changed.")
    expect(page.get_by_label("Time")).to_have_value("15:30")
    expect(page.get_by_label("Station AE title")).to_have_value("CT_ED")
    page.screenshot(path=artifacts / "orders-detail-tablet.png", full_page=True)

    # A cancellation posted from elsewhere with the session cookie but no CSRF token: refused.
    forged = page.request.post(f"{server.http_url}/orders/{accession}/cancel",
                               form={"reason": "forged"})  # fmt: skip
    assert forged.status == 403
    page.reload()
    expect(page.locator("#order-status")).to_have_text("scheduled")

    page.get_by_role("link", name="Cancel the order…").click()
    expect(page.locator("#cancel-question")).to_contain_text(accession)
    page.get_by_label("Reason (optional)").fill("Discharged before the scan")
    page.get_by_role("button", name="Yes, cancel the order").click()
    expect(page.locator("#order-done")).to_have_text(
        "The order was cancelled; it is off the worklist."
    )
    expect(page.locator("#order-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Save the schedule")).to_have_count(0)

    page.goto(f"{server.http_url}/orders")
    expect(page.locator("#order-table tbody tr", has_text=accession)).to_have_count(0)
    page.get_by_role("link", name="Cancelled", exact=True).click()
    expect(page.locator("#order-table tbody tr", has_text=accession)).to_have_count(1)
    assert problems == [], problems


def _keep_error(message: ConsoleMessage, problems: list[str]) -> None:
    """A Content-Security-Policy violation, or a style sheet that failed to load (the
    refused form's 400 and the absent favicon are expected)."""
    url = str(message.location.get("url", ""))
    failed_load = message.text.startswith("Failed to load resource")
    if message.type == "error" and (not failed_load or "/static/" in url):
        problems.append(f"{message.text} {url}")
