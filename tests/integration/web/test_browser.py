"""The landing page and the viewer in real Chromium, against a real `pedipacs serve`.

One server (SQLite) per module holds the demo data set, sent with storescu: a CT head of
40 slices, ultrasound cine clips (multi-frame), radiographs, for children from two days to
fifteen years old. The age rule itself is tested on a table of dates, in the browser, with
the page's own script served from its folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    Request,
    Response,
    Route,
    expect,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from pydicom import dcmread

from pedipacs.demo.generator import generate_demo_data
from pedipacs.web.pages.landing import STATIC_DIR
from support.browser import (
    TABLET,
    assert_no_sideways_scroll,
    assert_touch_targets,
    open_signed_in,
)
from support.dcmtk import storescu
from support.server import TESTER, TESTER_PASSWORD, RunningServer, start_server

REPO = Path(__file__).resolve().parents[3]
VIEWER_DIR = Path(os.environ.get("PEDIPACS_TEST_VIEWER_DIR", REPO / "var" / "viewer"))
STATIC_ORIGIN = "http://pages.test"
VIEWER_TIMEOUT_MS = 120_000  # SwiftShader renders WebGL on the CPU, shared with the server
RecordProperty = Callable[[str, object], None]


@dataclass(frozen=True)
class DemoStudy:
    study_instance_uid: str
    patient_name: str
    patient_id: str
    modality: str
    study_description: str
    instances: int


@dataclass(frozen=True)
class DemoArchive:
    server: RunningServer
    studies: tuple[DemoStudy, ...]

    def study(self, modality: str, description_start: str = "") -> DemoStudy:
        return next(
            each
            for each in self.studies
            if each.modality == modality and each.study_description.startswith(description_start)
        )


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory: pytest.TempPathFactory, dcmtk: None) -> Iterator[DemoArchive]:
    folder = tmp_path_factory.mktemp("browser")
    summary = generate_demo_data(folder / "demo", patients=12)
    running = start_server(
        folder / "server",
        f"sqlite:///{folder / 'index.sqlite3'}",
        extra_env={"PEDIPACS_VIEWER_DIR": str(VIEWER_DIR)},
    )
    try:
        sent = storescu(running, summary.files)
        assert sent.returncode == 0, sent.stderr
        yield DemoArchive(running, _studies_in(summary.files))
    finally:
        running.stop()


def _studies_in(files: tuple[Path, ...]) -> tuple[DemoStudy, ...]:
    counts: dict[str, int] = {}
    first: dict[str, DemoStudy] = {}
    for path in files:
        header = dcmread(path, stop_before_pixels=True)
        uid = str(header.StudyInstanceUID)
        counts[uid] = counts.get(uid, 0) + 1
        first.setdefault(
            uid,
            DemoStudy(
                study_instance_uid=uid,
                patient_name=str(header.PatientName),
                patient_id=str(header.PatientID),
                modality=str(header.Modality),
                study_description=str(header.StudyDescription),
                instances=0,
            ),
        )
    return tuple(
        DemoStudy(**{**study.__dict__, "instances": counts[uid]}) for uid, study in first.items()
    )


@pytest.fixture
def static_page(page: Page) -> Page:
    """A blank page whose origin serves the pages' static folder, for the scripts alone."""

    def fulfil(route: Route) -> None:
        path = urlparse(route.request.url).path
        file = STATIC_DIR / path.removeprefix("/static/")
        if path.startswith("/static/") and file.parent == STATIC_DIR and file.is_file():
            kind = "text/css" if file.suffix == ".css" else "text/javascript"
            route.fulfill(path=file, content_type=kind)
        elif path == "/":
            route.fulfill(body="<!doctype html><title>blank</title>", content_type="text/html")
        else:
            route.fulfill(status=404, body="not found")

    page.route(f"{STATIC_ORIGIN}/**", fulfil)
    page.goto(f"{STATIC_ORIGIN}/")
    return page


def _call_module(page: Page, module: str, function: str, cases: list[list[object]]) -> list[str]:
    result = page.evaluate(
        """async ([module, name, cases]) => {
            const imported = await import(module);
            return cases.map((arguments_) => imported[name](...arguments_));
        }""",
        [f"/static/{module}", function, cases],
    )
    assert isinstance(result, list)
    return [str(each) for each in result]


# --- The age rule, in the browser -------------------------------------------------------

AGE_CASES = [
    # (PatientBirthDate, StudyDate, PatientAge, shown), with why in the comment
    ("20240101", "20240101", "", "0 days"),  # the day of birth
    ("20240101", "20240102", "", "1 day"),
    ("20240101", "20240130", "", "29 days"),
    ("20231231", "20240130", "", "30 days"),  # across a new year, still under a month
    ("20240131", "20240229", "", "29 days"),  # born on the 31st: no 31 February, not yet a month
    ("20240131", "20240301", "", "4 weeks"),  # ... the month completes on 1 March
    ("20240115", "20240215", "", "4 weeks"),  # one month old: weeks until three months
    ("20240115", "20240414", "", "12 weeks"),  # a day short of three months
    ("20240115", "20240415", "", "3 months"),
    ("20230310", "20240309", "", "11 months"),  # the day before the first birthday
    ("20230310", "20240310", "", "12 months"),  # months until two years
    ("20220615", "20240614", "", "23 months"),
    ("20220615", "20240615", "", "2 years"),
    ("20200229", "20220228", "", "23 months"),  # leap-day baby, common year: not on 28 Feb ...
    ("20200229", "20220301", "", "2 years"),  # ... but on 1 March
    ("20200229", "20240229", "", "4 years"),  # a real birthday in a leap year
    ("20190301", "20200229", "", "11 months"),  # 29 February itself is just a day
    ("20061223", "20220118", "", "15 years"),
    ("", "20240101", "003W", "3 weeks"),  # no birth date: the modality's Patient's Age
    ("", "20240101", "010M", "10 months"),
    ("", "", "004Y", "4 years"),
    ("", "", "001D", "1 day"),
    ("20240110", "20240101", "", ""),  # a study before the birth date shows nothing
    ("20230230", "20240101", "001Y", "1 year"),  # an impossible birth date: Patient's Age
    ("", "", "", ""),
    ("", "", "3 years", ""),  # not an AS value
]


def test_paediatric_age_follows_the_calendar_rule(static_page: Page) -> None:
    cases = [[birth, study, age] for birth, study, age, _ in AGE_CASES]
    shown = _call_module(static_page, "age.js", "paediatricAge", cases)
    expected = [each[3] for each in AGE_CASES]
    mismatches = [
        f"{case} -> {got!r}, expected {want!r}"
        for case, got, want in zip(cases, shown, expected, strict=True)
        if got != want
    ]
    assert mismatches == []


def test_person_names_dates_and_name_queries_are_formatted_for_people(static_page: Page) -> None:
    names = [
        [{"Alphabetic": "DOE^JANE"}],
        [{"Alphabetic": "Müller^Lena"}],
        [{"Alphabetic": "O'BRIEN^MARY-ANN^JO"}],
        [{"Alphabetic": "NEWBORN"}],
        [{"Alphabetic": "SMITH^JOHN^^DR^JR"}],
        [{}],
        [None],
    ]
    assert _call_module(static_page, "dicom-json.js", "formatPersonName", names) == [
        "DOE, Jane",
        "Müller, Lena",
        "O'BRIEN, Mary-Ann Jo",
        "NEWBORN",
        "Dr SMITH, John JR",  # a suffix (JR, III) is kept as written
        "",
        "",
    ]
    dates = [["20240312"], ["2024.03.12"], ["20241301"], [""]]
    assert _call_module(static_page, "dicom-json.js", "formatDicomDate", dates) == [
        "12 Mar 2024",
        "12 Mar 2024",
        "20241301",
        "",
    ]
    queries = [["doe"], [" Doe, Jane "], ["DO?"], ["*ller"], [""]]
    assert _call_module(static_page, "landing.js", "patientNameQuery", queries) == [
        "doe*",
        "Doe^Jane*",
        "DO?",
        "*ller",
        "",
    ]


# --- The landing page against the real server --------------------------------------------


def _search(page: Page, name: str) -> None:
    page.get_by_label("Patient name").fill(name)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#search-status")).not_to_have_attribute("data-state", "loading")


def test_landing_page_finds_a_patient_and_shows_the_age_the_paediatric_way(
    page: Page, demo_archive: DemoArchive, artifacts: Path, record_property: RecordProperty
) -> None:
    neonate = demo_archive.study("US", "US Head Neonatal")
    qido_urls: list[str] = []
    page.on("request", lambda request: _keep_qido(request, qido_urls))
    open_signed_in(page, demo_archive.server)
    expect(page.locator("#study-table tbody tr").first).to_be_visible()

    family = neonate.patient_name.split("^")[0]
    _search(page, family[:3].lower())
    rows = page.locator("#study-table tbody tr")
    row = rows.filter(has_text=neonate.patient_id)
    expect(row).to_have_count(1)
    family_name, given_name = neonate.patient_name.split("^")
    expect(row.locator("th")).to_have_text(f"{family_name}, {given_name}")
    expect(row.locator("td[data-label='Age at study']")).to_have_text("2 days")
    expect(row.locator("td[data-label='Modality']")).to_have_text("US")
    expect(row.locator("td[data-label='Description']")).to_have_text("US Head Neonatal")
    expect(row.locator("td[data-label='Images']")).to_have_text("1")
    expect(row.locator("th a")).to_have_attribute(
        "href", f"/viewer/viewer?StudyInstanceUIDs={neonate.study_instance_uid}"
    )
    search = parse_qs(urlparse(qido_urls[-1]).query)
    assert search["PatientName"] == [f"{family[:3].lower()}*"]
    assert search["fuzzymatching"] == ["true"]

    _search(page, "Nobody-by-this-name")
    expect(page.locator("#search-status")).to_have_text("No studies match.")
    expect(page.locator("#study-table")).to_be_hidden()
    _screenshot(page, artifacts / "landing-no-match.png", record_property)


def test_landing_page_pages_through_every_study_with_more(
    page: Page, demo_archive: DemoArchive
) -> None:
    # Pages of 5 instead of 25, so the demo data set spans several: the page as served, with
    # its page size attribute changed on the way to the browser.
    def small_pages(route: Route) -> None:
        served = route.fetch()
        html = served.text().replace('data-page-size="25"', 'data-page-size="5"')
        assert 'data-page-size="5"' in html
        route.fulfill(response=served, body=html)

    open_signed_in(page, demo_archive.server)
    page.route(f"{demo_archive.server.http_url}/", small_pages)
    page.goto(f"{demo_archive.server.http_url}/")
    rows = page.locator("#study-table tbody tr")
    more = page.get_by_role("button", name="Show more studies")
    expect(rows).to_have_count(5)
    total = len(demo_archive.studies)
    for shown in range(10, total + 5, 5):
        more.click()
        expect(rows).to_have_count(min(shown, total))
    expect(more).to_be_hidden()
    expect(page.locator("#search-status")).to_have_text(f"Showing {total} studies.")
    uids = rows.evaluate_all("(rows) => rows.map((row) => row.dataset.studyInstanceUid)")
    assert sorted(uids) == sorted(study.study_instance_uid for study in demo_archive.studies)


def test_landing_page_shows_the_archive_error_message(
    page: Page, demo_archive: DemoArchive
) -> None:
    # The form cannot send a malformed date, so the request is altered on its way out; the
    # refusal and its message are the real server's.
    def malformed_date(route: Route) -> None:
        url = urlparse(route.request.url)
        route.continue_(url=url._replace(query=f"{url.query}&StudyDate=2024").geturl())

    open_signed_in(page, demo_archive.server)
    expect(page.locator("#study-table tbody tr").first).to_be_visible()
    page.route("**/dicomweb/studies?*", malformed_date)
    page.get_by_role("button", name="Search").click()
    error = page.locator("#search-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("HTTP 400")
    expect(error).to_contain_text("StudyDate")
    expect(page.locator("#study-table")).to_be_hidden()


def test_landing_page_is_readable_on_a_tablet_without_sideways_scrolling(
    browser: Browser, demo_archive: DemoArchive, artifacts: Path, record_property: RecordProperty
) -> None:
    context = browser.new_context(viewport=TABLET, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        open_signed_in(page, demo_archive.server)
        rows = page.locator("#study-table tbody tr")
        expect(rows.first).to_be_visible()
        assert_no_sideways_scroll(page)
        assert page.locator("#study-table thead").bounding_box()["height"] <= 1  # cards
        for index in range(rows.count()):
            box = rows.nth(index).bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= TABLET["width"]
        assert_touch_targets(page, "button, input, select, tbody a")
        font_size = page.evaluate(
            "() => parseFloat(getComputedStyle(document.querySelector('tbody td')).fontSize)"
        )
        assert font_size >= 14
        _screenshot(page, artifacts / "landing-tablet-768.png", record_property, full_page=True)
    finally:
        context.close()


# --- From the list into the viewer -------------------------------------------------------


@pytest.mark.parametrize(
    ("modality", "description", "age"),
    [("CT", "CT Head", "15 years"), ("US", "US Head Neonatal", "2 days")],
    ids=["ct-40-slices", "us-cine"],
)
def test_study_opens_in_the_viewer_and_draws_an_image(
    page: Page,
    demo_archive: DemoArchive,
    artifacts: Path,
    record_property: RecordProperty,
    modality: str,
    description: str,
    age: str,
) -> None:
    _require_viewer()
    study = demo_archive.study(modality, description)
    traffic = _Traffic()
    page.on("requestfinished", traffic.finished)
    page.on("requestfailed", traffic.failed)
    page.on("console", lambda message: traffic.console(message.type, message.text))
    page.on("pageerror", lambda error: traffic.console("pageerror", str(error)))

    open_signed_in(page, demo_archive.server)
    _search(page, study.patient_name.split("^")[0])
    row = page.locator("#study-table tbody tr").filter(has_text=study.study_description)
    expect(row).to_have_count(1)
    expect(row.locator("td[data-label='Age at study']")).to_have_text(age)
    expect(row.locator("td[data-label='Images']")).to_have_text(str(study.instances))
    _screenshot(page, artifacts / f"landing-{modality.lower()}-search.png", record_property)

    landing_requests = len(traffic.requests)
    row.locator("td[data-label='Description']").click()  # the whole row opens the study
    # pedipacs adds a viewer token to the URL, which OHIF takes out again at once.
    page.wait_for_url(f"**/viewer/viewer?StudyInstanceUIDs={study.study_instance_uid}*")

    try:
        page.wait_for_function(DRAWN_CANVAS_JS, timeout=VIEWER_TIMEOUT_MS, polling=500)
        is_drawn = True
    except PlaywrightTimeoutError:
        is_drawn = False
    name = f"viewer-{modality.lower()}"
    _screenshot(page, artifacts / f"{name}.png", record_property)
    log = artifacts / f"{name}-requests.json"
    log.write_text(json.dumps(traffic.report(), indent=2))
    record_property(f"{name}-requests", str(log))
    print(f"viewer requests and console errors: {log}")
    failed = traffic.dicomweb_failures()
    assert is_drawn, (
        f"no viewport canvas drew an image within {VIEWER_TIMEOUT_MS // 1000} s; "
        f"failed DICOMweb requests: {failed}; console: {traffic.messages[:10]}"
    )
    viewport = page.locator(".cornerstone-viewport-element, .viewport-element").first
    viewport_shot = artifacts / f"{name}-viewport.png"
    viewport.screenshot(path=viewport_shot)
    record_property(f"screenshot-{viewport_shot.stem}", str(viewport_shot))
    assert _is_not_blank(viewport_shot), f"the viewport looks blank: {viewport_shot}"
    assert failed == [], f"DICOMweb requests that failed: {failed}"
    unsigned = traffic.dicomweb_without_bearer(since=landing_requests)
    assert unsigned == [], f"viewer requests without its bearer token: {unsigned[:5]}"
    _close_first_visit_notices(page)
    if modality == "US":
        _assert_cine_plays(page)
    else:
        _assert_scrolling_changes_the_image(page, viewport)
    _screenshot(page, artifacts / f"{name}-moving.png", record_property)


def _close_first_visit_notices(page: Page) -> None:
    """OHIF's tour and its "investigational use" banner, which sit over the viewport."""
    for notice in ("Skip all", "Confirm and hide"):
        button = page.get_by_text(notice, exact=True)
        if button.count():
            button.first.click()


def _assert_cine_plays(page: Page) -> None:
    """The cine player's play button makes the clip run: three different frames are drawn."""
    play = page.locator('[data-cy="cine-player-play-pause"]')
    expect(play).to_be_visible(timeout=30_000)
    play.click()
    seen = {page.evaluate(CANVAS_FINGERPRINT_JS)}
    changed = f"(seen) => !seen.includes(({CANVAS_FINGERPRINT_JS})())"
    for _ in range(2):
        page.wait_for_function(changed, arg=sorted(seen), timeout=30_000, polling=50)
        seen.add(page.evaluate(CANVAS_FINGERPRINT_JS))
    play.click()  # pause again


def _assert_scrolling_changes_the_image(page: Page, viewport: Locator) -> None:
    """The mouse wheel over the viewport moves to another CT slice; the wheel is turned again
    until the image changes (under load the next slice may still be on its way)."""
    box = viewport.bounding_box()
    assert box is not None
    before = page.evaluate(CANVAS_FINGERPRINT_JS)
    changed = f"(before) => ({CANVAS_FINGERPRINT_JS})() !== before"
    for _ in range(30):
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 120)
        try:
            page.wait_for_function(changed, arg=before, timeout=2_000)
            return
        except PlaywrightTimeoutError:
            continue
    raise AssertionError("turning the mouse wheel over the viewport never changed the image")


# A checksum of the largest cornerstone canvas: changes when another image is drawn.
CANVAS_FINGERPRINT_JS = """() => {
    const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas')];
    const canvas = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
    if (!canvas) return null;
    const context = canvas.getContext('2d', { willReadFrequently: true });
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
    let sum = 0;
    for (let index = 0; index < data.length; index += 4 * 5) sum = (sum * 31 + data[index]) >>> 0;
    return sum;
}"""


# A cornerstone viewport canvas with an image: many grey levels, not one flat colour. The
# on-screen canvas is 2D (cornerstone3D copies its WebGL rendering into it), so it reads back.
DRAWN_CANVAS_JS = """() => {
    const canvases = document.querySelectorAll('canvas.cornerstone-canvas');
    for (const canvas of canvases) {
        if (canvas.width < 32 || canvas.height < 32) continue;
        const context = canvas.getContext('2d', { willReadFrequently: true });
        if (!context) continue;
        const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
        const levels = new Set();
        let lit = 0;
        for (let index = 0; index < data.length; index += 4 * 7) {
            const grey = (data[index] + data[index + 1] + data[index + 2]) / 3;
            levels.add(Math.round(grey));
            if (grey > 16) lit += 1;
        }
        if (levels.size >= 16 && lit * 4 * 7 > data.length * 0.01) return true;
    }
    return false;
}"""


class _Traffic:
    """What the viewer asked for and what went wrong, for the report and the assertion."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.messages: list[str] = []

    def finished(self, request: Request) -> None:
        response: Response | None = request.response()
        authorization = request.all_headers().get("authorization", "")
        self.requests.append(
            {
                "method": request.method,
                "url": request.url,
                "status": response.status if response else None,
                "type": request.resource_type,
                "bearer": authorization.startswith("Bearer "),
                "body": _short_body(response) if response and response.status >= 400 else "",
            }
        )

    def failed(self, request: Request) -> None:
        self.requests.append(
            {
                "method": request.method,
                "url": request.url,
                "status": None,
                "failure": request.failure,
            }
        )

    def console(self, kind: str, text: str) -> None:
        if kind in {"error", "pageerror", "warning"}:
            self.messages.append(f"{kind}: {text}")

    def dicomweb_failures(self) -> list[dict[str, object]]:
        return [
            each
            for each in self.requests
            if "/dicomweb/" in str(each["url"])
            and (each["status"] is None or int(str(each["status"])) >= 400)
        ]

    def dicomweb_without_bearer(self, since: int) -> list[str]:
        """DICOMweb requests made from request `since` on (the viewer's) without
        `Authorization: Bearer`: it should use the token pedipacs gave it, not the cookie."""
        return [
            str(each["url"])
            for each in self.requests[since:]
            if "/dicomweb/" in str(each["url"])
            and each.get("type") != "document"
            and not each.get("bearer")
        ]

    def report(self) -> dict[str, object]:
        return {"requests": self.requests, "console": self.messages}


def _short_body(response: Response) -> str:
    try:
        return response.text()[:500]
    except Exception as error:  # the body may be gone once the page navigated
        return f"(body unavailable: {error})"


def _keep_qido(request: Request, urls: list[str]) -> None:
    if "/dicomweb/studies" in request.url:
        urls.append(request.url)


def _require_viewer() -> None:
    if (VIEWER_DIR / "index.html").is_file():
        return
    message = f"the OHIF viewer is not installed in {VIEWER_DIR}; run `make viewer`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _is_not_blank(path: Path) -> bool:
    """An image is more than one flat colour: many grey levels and some spread."""
    with Image.open(path) as image:
        grey = image.convert("L")
        levels = sum(1 for count in grey.histogram() if count)
        spread = ImageStat.Stat(grey).stddev[0]
    return levels >= 16 and spread >= 4.0


def _screenshot(
    page: Page, path: Path, record_property: RecordProperty, *, full_page: bool = False
) -> None:
    page.screenshot(path=path, full_page=full_page)
    record_property(f"screenshot-{path.stem}", str(path))
    print(f"screenshot: {path}")


def test_sign_in_refuses_a_wrong_password_and_sign_out_ends_the_session(
    page: Page, demo_archive: DemoArchive
) -> None:
    server = demo_archive.server
    page.goto(f"{server.http_url}/")
    expect(page).to_have_url(f"{server.http_url}/signin?next=%2F")
    page.get_by_label("Username").fill(TESTER)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-error")).to_have_text("wrong username or password")

    page.get_by_label("Password").fill(TESTER_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server.http_url}/")
    expect(page.locator(".topbar .who")).to_have_text(TESTER)
    cookie = next(c for c in page.context.cookies() if c["name"] == "pedipacs_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.http_url}/signin")
    page.goto(f"{server.http_url}/")
    expect(page).to_have_url(f"{server.http_url}/signin?next=%2F")
