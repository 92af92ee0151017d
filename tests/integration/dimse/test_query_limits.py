"""Query breadth over the network: with `max_query_results` at 5, a C-FIND matching more is
refused with 0xA700 before any match is sent, a narrower one is answered in full, and QIDO-RS
pages at the same size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, select

from pedipacs.db.tables import AuditEvent
from pedipacs.demo.generator import generate_small_instances
from support.dcmtk import findscu_outcome, storescu
from support.server import RunningServer, start_server

LIMIT = 5
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
QUERY_EVENT_ID = "110112"


@dataclass(frozen=True)
class Archive:
    server: RunningServer
    study_uids: frozenset[str]
    # A study of LIMIT + 2 instances in one series: (patient ID, study UID, series UID).
    big_series: tuple[str, str, str]


@pytest.fixture
def archive(tmp_path: Path, database_url: str, dcmtk: None) -> Iterator[Archive]:
    """A server whose answers hold at most LIMIT matches, holding LIMIT + 2 studies: LIMIT + 1
    of one instance and one of LIMIT + 2 instances."""
    server = start_server(
        tmp_path / "server", database_url, extra_env={"PEDIPACS_MAX_QUERY_RESULTS": str(LIMIT)}
    )
    try:
        single = generate_small_instances(tmp_path / "single", LIMIT + 1, per_study=1, seed=7)
        big = generate_small_instances(tmp_path / "big", LIMIT + 2, per_study=LIMIT + 2, seed=8)
        stored = storescu(server, [*single, *big])
        assert stored.returncode == 0, stored.stderr
        headers = [dcmread(path, stop_before_pixels=True) for path in [*single, *big]]
        first = headers[-1]
        yield Archive(
            server,
            frozenset(str(h.StudyInstanceUID) for h in headers),
            (str(first.PatientID), str(first.StudyInstanceUID), str(first.SeriesInstanceUID)),
        )
    finally:
        server.stop()


def test_cfind_matching_more_than_the_limit_is_refused_before_any_match(
    archive: Archive, tmp_path: Path
) -> None:
    assert len(archive.study_uids) > LIMIT

    outcome = findscu_outcome(
        archive.server, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID="], tmp_path / "found"
    )

    assert outcome.status == OUT_OF_RESOURCES, outcome.log[-2000:]
    assert list(outcome.responses) == []
    assert outcome.error_comment == f"more than {LIMIT} matches; narrow the query"


def test_cfind_refusal_is_audited_as_a_failed_query(archive: Archive, tmp_path: Path) -> None:
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID="]
    findscu_outcome(archive.server, keys, tmp_path / "found")

    engine = create_engine(archive.server.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(AuditEvent.outcome, AuditEvent.remote_ae, AuditEvent.detail).where(
                    AuditEvent.event_id == QUERY_EVENT_ID
                )
            ).all()
    finally:
        engine.dispose()
    assert [(row.outcome, row.remote_ae) for row in rows] == [(4, "FINDSCU")]
    assert rows[0].detail.startswith(f"refused: more than {LIMIT} matches")


def test_cfind_within_the_limit_is_answered_in_full(archive: Archive, tmp_path: Path) -> None:
    patient_id, study_uid, _ = archive.big_series

    outcome = findscu_outcome(
        archive.server,
        ["QueryRetrieveLevel=STUDY", f"PatientID={patient_id}", "StudyInstanceUID="],
        tmp_path / "found",
    )

    assert outcome.status == SUCCESS, outcome.log[-2000:]
    assert [str(r.StudyInstanceUID) for r in outcome.responses] == [study_uid]


def test_image_level_cfind_of_one_series_is_not_capped(archive: Archive, tmp_path: Path) -> None:
    _, study_uid, series_uid = archive.big_series

    outcome = findscu_outcome(
        archive.server,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study_uid}",
            f"SeriesInstanceUID={series_uid}",
            "SOPInstanceUID=",
        ],
        tmp_path / "found",
    )

    assert outcome.status == SUCCESS, outcome.log[-2000:]
    assert len(outcome.responses) == LIMIT + 2


def test_qido_pages_at_the_same_size_and_says_more_exist(archive: Archive) -> None:
    url = f"{archive.server.http_url}/dicomweb/studies"

    first = archive.server.get(url, timeout=30)
    beyond = archive.server.get(url, params={"limit": str(LIMIT + 10)}, timeout=30)
    rest = archive.server.get(url, params={"offset": str(LIMIT)}, timeout=30)

    assert first.status_code == 200, first.text
    assert len(first.json()) == LIMIT
    assert first.headers["Warning"].startswith("299 ")
    assert len(beyond.json()) == LIMIT
    assert "Warning" in beyond.headers
    assert len(rest.json()) == len(archive.study_uids) - LIMIT
    assert "Warning" not in rest.headers
    found = {study["0020000D"]["Value"][0] for study in first.json() + rest.json()}
    assert found == archive.study_uids
