"""QueryService breadth limit, in-process on both databases: a query that cannot be paged is
answered in full up to `max_results` matches and refused (audited) beyond."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from pedipacs.archive.query import QueryService
from pedipacs.db.tables import AuditEvent
from pedipacs.demo.generator import generate_small_instances
from pedipacs.errors import QueryTooBroadError
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import KeyMatch, Query, SingleValue, Universal
from pedipacs.node import Node

ORIGIN = Origin.dimse("FINDSCU", "PEDIPACS", "127.0.0.1")
QUERY_EVENT_ID = "110112"
MAX_RESULTS = 3


def _store(node: Node, paths: list[Path]) -> None:
    for path in paths:
        node.ingest.ingest(path.read_bytes(), ORIGIN)


def _all_studies(limit: int | None = None) -> Query:
    return Query(
        InformationModel.STUDY_ROOT,
        QueryLevel.STUDY,
        key_matches=(KeyMatch("StudyInstanceUID", Universal()),),
        limit=limit,
    )


def _query_audit(node: Node) -> list[tuple[int, str]]:
    with node.database.reading() as session:
        rows = session.execute(
            select(AuditEvent.outcome, AuditEvent.detail)
            .where(AuditEvent.event_id == QUERY_EVENT_ID)
            .order_by(AuditEvent.sequence)
        )
        return [(row.outcome, row.detail or "") for row in rows]


def test_query_matching_exactly_max_results_is_answered_in_full(node: Node, tmp_path: Path) -> None:
    _store(node, generate_small_instances(tmp_path, MAX_RESULTS, per_study=1))
    queries = QueryService(node.database, max_results=MAX_RESULTS)

    matches = list(queries.find(_all_studies(), ORIGIN))

    assert len(matches) == MAX_RESULTS
    assert [outcome for outcome, _ in _query_audit(node)] == [0]


def test_query_matching_more_than_max_results_is_refused_and_the_refusal_audited(
    node: Node, tmp_path: Path
) -> None:
    _store(node, generate_small_instances(tmp_path, MAX_RESULTS + 1, per_study=1))
    queries = QueryService(node.database, max_results=MAX_RESULTS)
    answered: list[object] = []

    with pytest.raises(QueryTooBroadError, match=f"more than {MAX_RESULTS} matches"):
        answered.extend(queries.find(_all_studies(), ORIGIN))

    assert answered == [], "a refused query disclosed matches"
    [(outcome, detail)] = _query_audit(node)
    assert outcome == 4  # minor failure
    assert detail.startswith(f"refused: more than {MAX_RESULTS} matches")


def test_query_naming_its_series_by_uid_is_not_capped(node: Node, tmp_path: Path) -> None:
    paths = generate_small_instances(tmp_path, MAX_RESULTS + 2, per_study=MAX_RESULTS + 2)
    _store(node, paths)
    series_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    queries = QueryService(node.database, max_results=MAX_RESULTS)
    query = Query(
        InformationModel.STUDY_ROOT,
        QueryLevel.IMAGE,
        key_matches=(
            KeyMatch("SeriesInstanceUID", SingleValue(series_uid)),
            KeyMatch("SOPInstanceUID", Universal()),
        ),
    )

    matches = list(queries.find(query, ORIGIN))

    assert len(matches) == MAX_RESULTS + 2


def test_query_with_a_limit_of_its_own_is_paged_not_refused(node: Node, tmp_path: Path) -> None:
    _store(node, generate_small_instances(tmp_path, MAX_RESULTS + 2, per_study=1))
    queries = QueryService(node.database, max_results=MAX_RESULTS)

    page = list(queries.find(_all_studies(limit=MAX_RESULTS + 1), ORIGIN))

    assert len(page) == MAX_RESULTS + 1
