"""The one query compiler: the conformance table in-process on both databases, plus the rules
the table relies on (LIKE escaping, prefix ranges, TM bounds, refused input)."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from datetime import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql, sqlite

from conformance.cases import (
    INVALID_CASES,
    MATCHING_CASES,
    InvalidCase,
    MatchingCase,
    dataset_files,
    identifier_dataset,
    text_value,
)
from pedipacs.config import Settings
from pedipacs.db.query_sql import UID_CHUNK, compile_query
from pedipacs.dimse.identifier import query_from_identifier
from pedipacs.errors import InvalidInput, InvalidQueryError
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import (
    DateTimeRange,
    KeyMatch,
    Match,
    Query,
    SingleValue,
    UidList,
    ValueList,
    Wildcard,
)
from pedipacs.model.values import range_bound_date, range_bound_time
from pedipacs.node import Node

ORIGIN = Origin.cli("test")
POSTGRES_ADMIN_URL = os.environ.get(
    "PEDIPACS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def indexed_node(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[Node]:
    """One migrated node per database for the whole module, holding the conformance data set."""
    directory = tmp_path_factory.mktemp(f"query_sql_{request.param}")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'index.sqlite3'}"
    elif not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        _execute(f'CREATE SCHEMA "{schema}"')
        url = f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    node = Node.from_settings(
        Settings(
            data_dir=directory / "data", database_url=url, orphan_grace_seconds=0, dicom_workers=1
        )
    )
    try:
        node.migrate()
        for path in dataset_files(directory / "files"):
            node.ingest.ingest(path.read_bytes(), ORIGIN)
        yield node
    finally:
        node.stop()
        if schema is not None:
            _execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _execute(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


# -- the conformance table, in-process ----------------------------------------------------------


@pytest.mark.parametrize("case", MATCHING_CASES, ids=lambda case: case.name)
def test_find_returns_exactly_the_entities_the_case_expects(
    indexed_node: Node, case: MatchingCase
) -> None:
    query = query_from_identifier(identifier_dataset(case.level, case.request_keys), case.model)

    matches = list(indexed_node.queries.find(query, ORIGIN))

    found = [text_value(match.values[case.unique_keyword]) for match in matches]
    assert sorted(found) == sorted(case.expected)
    by_unique_key = dict(zip(found, matches, strict=True))
    for unique_key, attributes in case.returned.items():
        values = by_unique_key[unique_key].values
        assert {keyword: text_value(values[keyword]) for keyword in attributes} == attributes


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.name)
def test_find_refuses_an_invalid_identifier_with_invalid_input(
    indexed_node: Node, case: InvalidCase
) -> None:
    with warnings.catch_warnings():
        # pydicom warns about the deliberately invalid value while decoding it, as it does
        # for a peer's identifier; the refusal must come from pedipacs.
        warnings.filterwarnings("ignore", message="Invalid value for VR", category=UserWarning)
        identifier = identifier_dataset(case.level, case.keys)
        with pytest.raises(InvalidInput):
            query = query_from_identifier(identifier, case.model)
            list(indexed_node.queries.find(query, ORIGIN))


# -- the compiler's rules -----------------------------------------------------------------------


def _study_query(keyword: str, match: Match) -> Query:
    return Query(
        information_model=InformationModel.STUDY_ROOT,
        level=QueryLevel.STUDY,
        key_matches=(KeyMatch(keyword, match),),
    )


def _parameters(query: Query) -> list[object]:
    return list(compile_query(query).compile(dialect=sqlite.dialect()).params.values())


@pytest.mark.parametrize(
    ("pattern", "like"),
    [
        ("100%*", "100\\%%"),
        ("UNDER_SCORE*", "UNDER\\_SCORE%"),
        ("*R_S*", "%R\\_S%"),
        ("A\\B*", "A\\\\B%"),
        ("?OE^J*", "_OE^J%"),
    ],
)
def test_wildcard_escapes_sql_wildcards_and_translates_dicom_ones(pattern: str, like: str) -> None:
    statement = compile_query(_study_query("AccessionNumber", Wildcard(pattern)))
    compiled = statement.compile(dialect=postgresql.dialect())

    assert like in compiled.params.values()


def test_wildcard_with_literal_prefix_adds_a_prefix_range() -> None:
    parameters = _parameters(_study_query("AccessionNumber", Wildcard("A%1*")))

    assert "A%1" in parameters
    assert "A%1\U0010ffff" in parameters


def test_wildcard_on_person_name_compares_the_upper_case_alphabetic_group() -> None:
    parameters = _parameters(_study_query("PatientName", Wildcard("doe^j*=ドウ")))

    assert "DOE^J" in parameters
    assert "DOE^J\U0010ffff" in parameters


def test_wildcard_starting_with_a_wildcard_has_no_prefix_range() -> None:
    parameters = _parameters(_study_query("AccessionNumber", Wildcard("*a")))

    assert not any(isinstance(p, str) and p.endswith("\U0010ffff") for p in parameters)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1015", time(10, 15, 59, 999999)),
        ("10", time(10, 59, 59, 999999)),
        ("101530", time(10, 15, 30, 999999)),
        ("101530.5", time(10, 15, 30, 599999)),
        ("101530.123456", time(10, 15, 30, 123456)),
        ("10:15", time(10, 15, 59, 999999)),
    ],
)
def test_time_range_upper_bound_covers_the_whole_precision_given(
    value: str, expected: time
) -> None:
    assert range_bound_time(value, "StudyTime", is_end=True) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1015", time(10, 15)), ("10", time(10)), ("101530.5", time(10, 15, 30, 500000))],
)
def test_time_range_lower_bound_is_the_start_of_the_precision_given(
    value: str, expected: time
) -> None:
    assert range_bound_time(value, "StudyTime", is_end=False) == expected


def test_time_range_open_start_compiles_to_an_inclusive_upper_bound() -> None:
    parameters = _parameters(_study_query("StudyTime", DateTimeRange(None, "1015")))

    assert parameters == [time(10, 15, 59, 999999)]


@pytest.mark.parametrize("value", ["2020", "20201301", "2020-01-01x", "yesterday"])
def test_date_range_bound_that_is_not_a_date_is_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput):
        range_bound_date(value, "StudyDate")


@pytest.mark.parametrize("value", ["2561", "1075", "10x5", "101"])
def test_time_range_bound_that_is_not_a_time_is_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput):
        range_bound_time(value, "StudyTime", is_end=True)


@pytest.mark.parametrize(
    ("keyword", "match"),
    [
        ("StudyDate", Wildcard("2020*")),
        ("StudyInstanceUID", Wildcard("1.2.*")),
        ("NumberOfStudyRelatedInstances", Wildcard("1*")),
        ("AccessionNumber", DateTimeRange("A", "B")),
        ("StudyDate", DateTimeRange(None, None)),
        ("StudyDate", ValueList(("20200115", "20220630"))),
        ("StudyTime", ValueList(("1015", "1200"))),
        ("NumberOfStudyRelatedInstances", SingleValue("three")),
        ("SeriesDescription", SingleValue("Axial")),
    ],
)
def test_compiling_an_unusable_match_raises_invalid_query_error(keyword: str, match: Match) -> None:
    with pytest.raises(InvalidQueryError):
        compile_query(_study_query(keyword, match))


def test_unknown_keyword_does_not_narrow_the_query() -> None:
    assert _parameters(_study_query("PatientComments", SingleValue("x"))) == []


def test_long_uid_list_is_split_into_chunks() -> None:
    uids = tuple(f"1.2.3.{n}" for n in range(UID_CHUNK * 2 + 1))
    compiled = str(compile_query(_study_query("StudyInstanceUID", UidList(uids))).compile())

    assert compiled.count(" IN (") == 3


def test_wildcard_on_sqlite_is_a_case_sensitive_glob_with_brackets_escaped() -> None:
    statement = compile_query(_study_query("AccessionNumber", Wildcard("*[A]?")))
    compiled = statement.compile(dialect=sqlite.dialect())

    assert " GLOB " in str(compiled)
    assert " LIKE " not in str(compiled)
    assert "*[[]A]?" in compiled.params.values()
