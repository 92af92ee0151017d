"""PS3.4 C.2.2.2 matching through the DICOMweb door: the same cases as `test_cfind_matching`,
sent as QIDO-RS searches with httpx against the same running server and data set.

A case's keys become query parameters (an empty value becomes `includefield`); QIDO-RS has no
Patient Root, so the Patient Root cases run through findscu only.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydicom.datadict import tag_for_keyword

from conformance.cases import INVALID_CASES, MATCHING_CASES, InvalidCase, MatchingCase
from pedipacs.model.levels import InformationModel, QueryLevel
from support.server import RunningServer

RESOURCE = {QueryLevel.STUDY: "studies", QueryLevel.SERIES: "series", QueryLevel.IMAGE: "instances"}
STUDY_ROOT_CASES = [c for c in MATCHING_CASES if c.model is InformationModel.STUDY_ROOT]
QIDO_INVALID_CASES = [
    c
    for c in INVALID_CASES
    if c.model is InformationModel.STUDY_ROOT and c.level in ("STUDY", "SERIES", "IMAGE")
]


def qido_params(keys: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for keyword, value in keys:
        if keyword == "SpecificCharacterSet":
            continue  # QIDO-RS is always UTF-8
        params.append(("includefield", keyword) if value == "" else (keyword, value))
    return params


def search(
    server: RunningServer, level: QueryLevel, params: list[tuple[str, str]]
) -> httpx.Response:
    # httpx percent-encodes `^`, `*`, `\` and non-ASCII characters, as every HTTP client does.
    return server.get(
        f"{server.http_url}/dicomweb/{RESOURCE[level]}",
        params=params,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    )


def text_of(element: dict[str, Any] | None) -> str:
    """A DICOM JSON value as one string, the way `cases.text_value` writes C-FIND values."""
    if not element or "Value" not in element:
        return ""
    values = []
    for value in element["Value"]:
        if isinstance(value, dict):  # PN
            groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
            values.append("=".join(groups).rstrip("="))
        elif isinstance(value, float) and value.is_integer():
            values.append(str(int(value)))
        else:
            values.append("" if value is None else str(value))
    return "\\".join(values)


def tag_key(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


@pytest.mark.parametrize("case", STUDY_ROOT_CASES, ids=lambda case: case.name)
def test_qido_returns_exactly_the_entities_the_case_expects(
    loaded_server: RunningServer, case: MatchingCase
) -> None:
    response = search(loaded_server, case.level, qido_params(case.request_keys))

    assert response.status_code == 200, response.text
    found = [text_of(match.get(tag_key(case.unique_keyword))) for match in response.json()]
    assert sorted(found) == sorted(case.expected)
    by_unique_key = dict(zip(found, response.json(), strict=True))
    for unique_key, attributes in case.returned.items():
        match = by_unique_key[unique_key]
        assert {k: text_of(match.get(tag_key(k))) for k in attributes} == attributes


@pytest.mark.parametrize("case", QIDO_INVALID_CASES, ids=lambda case: case.name)
def test_qido_refuses_an_invalid_query_with_400_and_a_reason(
    loaded_server: RunningServer, case: InvalidCase
) -> None:
    level = QueryLevel(case.level or "STUDY")
    response = search(loaded_server, level, qido_params(case.keys))

    assert response.status_code == 400, response.text
    assert response.json()["detail"]


def test_qido_percent_decodes_values_and_splits_uid_lists_on_backslash(
    loaded_server: RunningServer,
) -> None:
    """Two points Orthanc's DICOMweb plugin fails: `LAST%5EF%2A` and `uid1%5Cuid2`."""
    raw_query = "PatientName=DOE%5EJ%2A&includefield=PatientName"
    response = loaded_server.get(
        f"{loaded_server.http_url}/dicomweb/studies?{raw_query}", timeout=30
    )
    names = {text_of(m[tag_key("PatientName")]) for m in response.json()}

    assert response.status_code == 200
    assert names and all(name.upper().startswith("DOE^J") for name in names)


def test_qido_fuzzy_matching_finds_names_by_any_component_prefix_in_any_case(
    loaded_server: RunningServer,
) -> None:
    exact = search(loaded_server, QueryLevel.STUDY, [("PatientName", "jane")])
    fuzzy = search(
        loaded_server, QueryLevel.STUDY, [("PatientName", "jane"), ("fuzzymatching", "true")]
    )

    assert exact.json() == []
    names = {text_of(m[tag_key("PatientName")]).upper() for m in fuzzy.json()}
    assert names and all("^JANE" in name for name in names)


def test_qido_pages_with_limit_and_offset_in_a_stable_order(loaded_server: RunningServer) -> None:
    everything = search(loaded_server, QueryLevel.STUDY, [])
    pages = [
        search(loaded_server, QueryLevel.STUDY, [("limit", "5"), ("offset", str(offset))])
        for offset in range(0, len(everything.json()), 5)
    ]

    uid = tag_key("StudyInstanceUID")
    paged = [text_of(m[uid]) for page in pages for m in page.json()]
    assert paged == [text_of(m[uid]) for m in everything.json()]
    assert len(pages[0].json()) == 5
