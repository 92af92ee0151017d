"""RetrieveService: metadata from the ingest-time cache, and from the file when there is none."""

from __future__ import annotations

import json

from sqlalchemy import delete, func, select

from pedipacs.db.tables import AuditEvent, InstanceMetadata
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import KeyMatch, Query, SingleValue
from pedipacs.node import Node
from support.files import PYDICOM_TEST_FILES

ORIGIN = Origin.cli("test")
CT_SMALL = PYDICOM_TEST_FILES / "CT_small.dcm"


def _study_query(study_instance_uid: str) -> Query:
    match = KeyMatch("StudyInstanceUID", SingleValue(study_instance_uid))
    return Query(InformationModel.STUDY_ROOT, QueryLevel.STUDY, (match,))


def test_metadata_comes_from_the_cache_written_at_ingest(node: Node) -> None:
    stored = node.ingest.ingest(CT_SMALL.read_bytes(), ORIGIN)

    [record] = node.retrieve.metadata(_study_query(stored.study_instance_uid), ORIGIN)

    assert record.location.sop_instance_uid == stored.sop_instance_uid
    assert json.loads(record.dicom_json)["00080018"]["Value"] == [stored.sop_instance_uid]


def test_metadata_of_an_instance_stored_before_the_cache_is_read_from_its_file(node: Node) -> None:
    stored = node.ingest.ingest(CT_SMALL.read_bytes(), ORIGIN)
    [cached] = node.retrieve.metadata(_study_query(stored.study_instance_uid), ORIGIN)
    with node.database.unit_of_work() as session:
        session.execute(delete(InstanceMetadata))

    [from_file] = node.retrieve.metadata(_study_query(stored.study_instance_uid), ORIGIN)

    assert from_file.dicom_json == cached.dicom_json


def _audit_rows(node: Node) -> int:
    with node.database.reading() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def test_a_viewers_frame_reads_of_a_study_are_audited_once_per_window(node: Node) -> None:
    stored = node.ingest.ingest(CT_SMALL.read_bytes(), ORIGIN)
    query = _study_query(stored.study_instance_uid)
    other_client = Origin.http(None, "10.0.0.7")
    before = _audit_rows(node)

    for _ in range(5):
        node.retrieve.locate(query, ORIGIN, purpose="frames", is_image_read=True)
    node.retrieve.locate(query, other_client, purpose="frames", is_image_read=True)
    node.retrieve.locate(query, ORIGIN, purpose="retrieve")
    node.retrieve.locate(query, ORIGIN, purpose="retrieve")

    assert _audit_rows(node) - before == 4  # 1 for the frames, 1 for the other client, 2 retrieves
