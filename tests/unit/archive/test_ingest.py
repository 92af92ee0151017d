"""IngestService on both databases: outcomes, the duplicate policy, aggregates, audit."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import func, select

from pedipacs.config import DuplicatePolicy, Settings
from pedipacs.db.tables import AuditEvent, Instance, InstanceConflict, Patient, Series, Study
from pedipacs.errors import (
    DuplicateInstanceRejected,
    InconsistentIdentityError,
    MissingAttributeError,
    ObjectTooLargeError,
)
from pedipacs.model.origin import Origin
from pedipacs.model.records import StoreOutcome
from pedipacs.node import Node
from support.files import PYDICOM_TEST_FILES

ORIGIN = Origin.dimse("MODALITY", "PEDIPACS", "127.0.0.1")


def encoded(dataset: Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct(sop_instance_uid: str = "1.2.826.0.1.3680043.8.498.10", **changes: str) -> Dataset:
    dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    return dataset


def count(node: Node, table: type) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_new_instance_is_stored_indexed_and_audited(node: Node) -> None:
    stored = node.ingest.ingest(encoded(ct()), ORIGIN)

    assert stored.outcome is StoreOutcome.STORED
    assert count(node, Instance) == 1
    assert len(list(node.blob_store.iter_blobs())) == 1
    with node.database.reading() as session:
        audit = session.scalars(select(AuditEvent)).one()
        assert (audit.event_id, audit.remote_ae, audit.patient_id) == (
            "110104",
            "MODALITY",
            stored.patient_id,
        )


def test_identical_resend_is_acknowledged_without_a_second_copy(node: Node) -> None:
    data = encoded(ct())
    node.ingest.ingest(data, ORIGIN)
    again = node.ingest.ingest(data, ORIGIN)

    assert again.outcome is StoreOutcome.DUPLICATE_IGNORED
    assert count(node, Instance) == 1
    assert len(list(node.blob_store.iter_blobs())) == 1
    assert count(node, InstanceConflict) == 0


def test_same_dataset_with_other_file_meta_counts_as_identical(node: Node) -> None:
    first = ct()
    second = ct()
    second.file_meta.ImplementationVersionName = "OTHER_SENDER"
    node.ingest.ingest(encoded(first), ORIGIN)
    assert node.ingest.ingest(encoded(second), ORIGIN).outcome is StoreOutcome.DUPLICATE_IGNORED


def test_different_content_under_reject_policy_is_refused_and_recorded(node: Node) -> None:
    node.ingest.ingest(encoded(ct()), ORIGIN)
    with pytest.raises(DuplicateInstanceRejected):
        node.ingest.ingest(encoded(ct(StudyDescription="changed")), ORIGIN)

    assert count(node, Instance) == 1
    assert len(list(node.blob_store.iter_blobs())) == 1
    with node.database.reading() as session:
        conflict = session.scalars(select(InstanceConflict)).one()
        assert conflict.resolution == "REJECT"


def _node_with_policy(settings: Settings, policy: DuplicatePolicy) -> Node:
    node = Node.from_settings(settings.model_copy(update={"duplicate_policy": policy}))
    node.migrate()
    return node


def test_keep_newest_replaces_the_bytes_and_removes_the_old_blob(settings: Settings) -> None:
    node = _node_with_policy(settings, DuplicatePolicy.KEEP_NEWEST)
    try:
        node.ingest.ingest(encoded(ct()), ORIGIN)
        newer = node.ingest.ingest(encoded(ct(StudyDescription="corrected")), ORIGIN)

        assert newer.outcome is StoreOutcome.REPLACED
        blobs = list(node.blob_store.iter_blobs())
        assert len(blobs) == 1
        with node.blob_store.open(blobs[0].key) as handle:
            assert dcmread(handle).StudyDescription == "corrected"
        with node.database.reading() as session:
            study = session.scalars(select(Study)).one()
            assert study.number_of_study_related_instances == 1
    finally:
        node.stop()


def test_keep_first_acknowledges_but_keeps_the_stored_object(settings: Settings) -> None:
    node = _node_with_policy(settings, DuplicatePolicy.KEEP_FIRST)
    try:
        node.ingest.ingest(encoded(ct()), ORIGIN)
        later = node.ingest.ingest(encoded(ct(StudyDescription="later")), ORIGIN)

        assert later.outcome is StoreOutcome.CONFLICT_KEPT_STORED
        blobs = list(node.blob_store.iter_blobs())
        with node.blob_store.open(blobs[0].key) as handle:
            assert dcmread(handle).StudyDescription != "later"
        assert count(node, InstanceConflict) == 1
    finally:
        node.stop()


def test_same_uid_under_another_series_is_refused_whatever_the_policy(settings: Settings) -> None:
    node = _node_with_policy(settings, DuplicatePolicy.KEEP_NEWEST)
    try:
        node.ingest.ingest(encoded(ct()), ORIGIN)
        with pytest.raises(InconsistentIdentityError):
            node.ingest.ingest(
                encoded(ct(SeriesInstanceUID="1.2.826.0.1.3680043.8.498.99")), ORIGIN
            )
        assert count(node, Series) == 1
        assert count(node, InstanceConflict) == 1
    finally:
        node.stop()


def test_series_moving_to_another_study_is_refused(node: Node) -> None:
    node.ingest.ingest(encoded(ct()), ORIGIN)
    other_study = ct("1.2.826.0.1.3680043.8.498.11", StudyInstanceUID="1.2.826.0.1.3680043.8.498.7")
    with pytest.raises(InconsistentIdentityError):
        node.ingest.ingest(encoded(other_study), ORIGIN)
    assert count(node, Instance) == 1
    assert len(list(node.blob_store.iter_blobs())) == 1


def test_study_of_another_patient_is_refused(node: Node) -> None:
    node.ingest.ingest(encoded(ct()), ORIGIN)
    with pytest.raises(InconsistentIdentityError):
        node.ingest.ingest(encoded(ct("1.2.826.0.1.3680043.8.498.12", PatientID="OTHER")), ORIGIN)
    assert count(node, Patient) == 1


def test_aggregates_follow_instances_series_and_modalities(node: Node) -> None:
    uids = [f"1.2.826.0.1.3680043.8.498.{n}" for n in range(20, 26)]
    for index, uid in enumerate(uids):
        series = "1.2.826.0.1.3680043.8.498.200" if index < 4 else "1.2.826.0.1.3680043.8.498.201"
        modality = "CT" if index < 4 else "US"
        node.ingest.ingest(encoded(ct(uid, SeriesInstanceUID=series, Modality=modality)), ORIGIN)

    with node.database.reading() as session:
        study = session.scalars(select(Study)).one()
        patient = session.scalars(select(Patient)).one()
        counts = sorted(
            s.number_of_series_related_instances for s in session.scalars(select(Series))
        )
    assert (study.number_of_study_related_instances, study.number_of_study_related_series) == (6, 2)
    assert study.modalities_in_study == "CT\\US"
    assert counts == [2, 4]
    assert (
        patient.number_of_patient_related_studies,
        patient.number_of_patient_related_series,
        patient.number_of_patient_related_instances,
    ) == (1, 2, 6)


def test_missing_sop_instance_uid_is_refused_before_any_write(node: Node) -> None:
    dataset = ct()
    del dataset.SOPInstanceUID
    del dataset.file_meta.MediaStorageSOPInstanceUID
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=False)
    with pytest.raises(MissingAttributeError):
        node.ingest.ingest(buffer.getvalue(), ORIGIN)
    assert list(node.blob_store.iter_blobs()) == []
    assert count(node, AuditEvent) == 0


def test_object_over_the_size_limit_is_refused(settings: Settings) -> None:
    node = Node.from_settings(settings.model_copy(update={"max_object_size": 1000}))
    node.migrate()
    try:
        with pytest.raises(ObjectTooLargeError):
            node.ingest.ingest(encoded(ct()), ORIGIN)
        assert list(node.blob_store.iter_blobs()) == []
    finally:
        node.stop()
