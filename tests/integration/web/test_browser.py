"""The landing page and the viewer in real Chromium, against a real `pedipacs serve`.

One server (SQLite) per module holds the demo data set, sent with storescu: a CT head of
40 slices, ultrasound cine clips (multi-frame), radiographs, for children from two days to
fifteen years old. The age rule itself is tested on a table of dates, in the browser, with
the page's own script served from its folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, Route, ViewportSize
from pydicom import dcmread

from pedipacs.demo.generator import generate_demo_data
from pedipacs.web.pages.landing import STATIC_DIR
from support.dcmtk import storescu
from support.server import RunningServer, start_server

REPO = Path(__file__).resolve().parents[3]
VIEWER_DIR = Path(os.environ.get("PEDIPACS_TEST_VIEWER_DIR", REPO / "var" / "viewer"))
STATIC_ORIGIN = "http://pages.test"
VIEWER_TIMEOUT_MS = 120_000  # SwiftShader renders WebGL on the CPU, shared with the server
TABLET: ViewportSize = {"width": 768, "height": 1024}
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
