"""QIDO-RS query strings -> the one query model."""

from __future__ import annotations

import pytest

from pedipacs.dicomweb.qido_params import DEFAULT_RETURN_KEYS, query_from_qido_params
from pedipacs.errors import InvalidQueryError
from pedipacs.model.levels import QueryLevel
from pedipacs.model.query import (
    DateTimeRange,
    KeyMatch,
    SequenceMatch,
    SingleValue,
    UidList,
    ValueList,
    Wildcard,
)


def keys(
    params: list[tuple[str, str]], level: QueryLevel = QueryLevel.STUDY
) -> tuple[KeyMatch, ...]:
    return query_from_qido_params(params, level, {}).query.key_matches


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("PatientName", "DOE^J*")], KeyMatch("PatientName", Wildcard("DOE^J*"))),
        ([("00100020", "P1")], KeyMatch("PatientID", SingleValue("P1"))),
        ([("StudyDate", "20240101-20241231")],
         KeyMatch("StudyDate", DateTimeRange("20240101", "20241231"))),
        ([("StudyInstanceUID", "1.2\\1.3")], KeyMatch("StudyInstanceUID", UidList(("1.2", "1.3")))),
        ([("StudyInstanceUID", "1.2,1.3")], KeyMatch("StudyInstanceUID", UidList(("1.2", "1.3")))),
        ([("StudyInstanceUID", "1.2"), ("StudyInstanceUID", "1.3")],
         KeyMatch("StudyInstanceUID", UidList(("1.2", "1.3")))),
        ([("ModalitiesInStudy", "CT\\MR")], KeyMatch("ModalitiesInStudy", ValueList(("CT", "MR")))),
        ([("RequestAttributesSequence.AccessionNumber", "A1")],
         KeyMatch("RequestAttributesSequence",
                  SequenceMatch((KeyMatch("AccessionNumber", SingleValue("A1")),)))),
    ],
)  # fmt: skip
def test_parameters_become_the_same_matches_as_c_find_keys(
    params: list[tuple[str, str]], expected: KeyMatch
) -> None:
    assert keys(params) == (expected,)


def test_path_uids_constrain_and_control_parameters_do_not() -> None:
    request = query_from_qido_params(
        [("limit", "10"), ("offset", "20"), ("fuzzymatching", "true"), ("includefield", "all")],
        QueryLevel.SERIES,
        {"StudyInstanceUID": "1.2.3"},
    )

    assert request.query.key_matches == (KeyMatch("StudyInstanceUID", SingleValue("1.2.3")),)
    assert (request.query.limit, request.query.offset) == (10, 20)
    assert request.query.is_fuzzy and request.query.includes_all
    assert request.levels_shown == (QueryLevel.SERIES,)


def test_a_search_over_all_studies_returns_the_study_attributes_too() -> None:
    request = query_from_qido_params(
        [("includefield", "00081030,StationName")], QueryLevel.IMAGE, {}
    )

    assert request.levels_shown == (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)
    for keyword in (*DEFAULT_RETURN_KEYS[QueryLevel.STUDY], "StudyDescription", "StationName"):
        assert keyword in request.query.return_keys


@pytest.mark.parametrize(
    "params",
    [[("limit", "0")], [("offset", "-3")], [("NoSuchThing", "1")], [("includefield", "Nope")],
     [("fuzzymatching", "perhaps")], [("StudyDate", "2024*")],
     [("PatientName", "A"), ("PatientName", "B*")]],
)  # fmt: skip
def test_invalid_parameters_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidQueryError):
        keys(params)
