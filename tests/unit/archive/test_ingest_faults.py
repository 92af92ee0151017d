"""Faults injected into the blob store during ingest: no acknowledgement, no index row, and the
integrity sweep removes whatever bytes were left behind (STYLE.md 5.4)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import func, select

from pedipacs.archive.ingest import IngestService
from pedipacs.db.tables import AuditEvent, Change, Instance, Patient, Series, Study
from pedipacs.demo.generator import generate_small_instances
from pedipacs.errors import StorageUnavailable
from pedipacs.model.origin import Origin
from pedipacs.model.records import StoreOutcome
from pedipacs.node import Node
from pedipacs.storage.blob_store import BlobInfo, BlobStore, StoredBlob
from pedipacs.storage.filesystem import TEMP_DIR_NAME, FilesystemBlobStore

ORIGIN = Origin.dimse("MODALITY", "PEDIPACS", "127.0.0.1")


class Fault(Enum):
    NONE = "none"
    AFTER_PUT = "after put"  # the bytes are durable under their key, then the store fails
    BEFORE_RENAME = "before rename"  # the bytes reached the temporary file, not the key


class FaultyBlobStore:
    """A real FilesystemBlobStore that fails on purpose at a chosen step of `put`."""

    def __init__(self, inner: FilesystemBlobStore) -> None:
        self.inner = inner
        self.fault = Fault.NONE
        self.keys_attempted: list[str] = []

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        self.keys_attempted.append(key)
        if self.fault is Fault.BEFORE_RENAME:
            return self.inner.put(key, self._then_fail(chunks))
        info = self.inner.put(key, chunks)
        if self.fault is Fault.AFTER_PUT:
            raise StorageUnavailable(f"injected: the store failed after writing {key}")
        return info

    def _then_fail(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Every chunk reaches the temporary file, then the write fails before the rename."""
        yield from chunks
        assert any((self.inner.root / TEMP_DIR_NAME).glob("*.part")), "no temporary file"
        raise StorageUnavailable("injected: the store failed before the rename")

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def iter_blobs(self) -> Iterator[StoredBlob]:
        return self.inner.iter_blobs()

    def check(self) -> None:
        self.inner.check()


@pytest.fixture
def faulty_store(node: Node) -> FaultyBlobStore:
    return FaultyBlobStore(node.blob_store)


@pytest.fixture
def ingest(node: Node, faulty_store: FaultyBlobStore) -> IngestService:
    store: BlobStore = faulty_store
    return IngestService(
        node.database,
        store,
        duplicate_policy=node.settings.duplicate_policy,
        max_object_size=node.settings.max_object_size,
    )


@pytest.fixture
def instance_bytes(tmp_path: Path) -> bytes:
    return generate_small_instances(tmp_path / "sent", 1)[0].read_bytes()


def _row_counts(node: Node) -> dict[str, int]:
    with node.database.reading() as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
            for table in (Patient, Study, Series, Instance, Change, AuditEvent)
        }


def _blob_files(store: FilesystemBlobStore) -> list[Path]:
    return sorted(path for path in store.root.rglob("*") if path.is_file())


@pytest.mark.parametrize("fault", [Fault.AFTER_PUT, Fault.BEFORE_RENAME])
def test_store_failure_during_put_is_not_acknowledged_and_leaves_no_index_row(
    node: Node,
    ingest: IngestService,
    faulty_store: FaultyBlobStore,
    instance_bytes: bytes,
    fault: Fault,
) -> None:
    faulty_store.fault = fault

    with pytest.raises(StorageUnavailable, match="injected"):
        ingest.ingest(instance_bytes, ORIGIN)

    assert set(_row_counts(node).values()) == {0}
    assert list((node.blob_store.root / TEMP_DIR_NAME).iterdir()) == []
    assert node.integrity.missing_blobs() == []


def test_blob_orphaned_by_a_failure_after_put_is_removed_by_the_integrity_sweep(
    node: Node, ingest: IngestService, faulty_store: FaultyBlobStore, instance_bytes: bytes
) -> None:
    faulty_store.fault = Fault.AFTER_PUT
    with pytest.raises(StorageUnavailable):
        ingest.ingest(instance_bytes, ORIGIN)
    [orphan_key] = faulty_store.keys_attempted
    assert node.blob_store.exists(orphan_key)  # durable bytes nobody acknowledged

    report = node.integrity.sweep_orphans(grace_seconds=0)

    assert (report.blobs_seen, report.orphans_removed) == (1, 1)
    assert not node.blob_store.exists(orphan_key)
    assert _blob_files(node.blob_store) == []


def test_failure_before_the_rename_leaves_no_blob_under_the_key(
    node: Node, ingest: IngestService, faulty_store: FaultyBlobStore, instance_bytes: bytes
) -> None:
    faulty_store.fault = Fault.BEFORE_RENAME
    with pytest.raises(StorageUnavailable):
        ingest.ingest(instance_bytes, ORIGIN)
    [key] = faulty_store.keys_attempted

    assert not node.blob_store.exists(key)
    assert _blob_files(node.blob_store) == []
    report = node.integrity.sweep_orphans(grace_seconds=0)
    assert (report.blobs_seen, report.orphans_removed, report.temporary_removed) == (0, 0, 0)


def test_temporary_file_left_by_a_crash_before_the_rename_is_removed_by_the_sweep(
    node: Node, ingest: IngestService, instance_bytes: bytes
) -> None:
    stored = ingest.ingest(instance_bytes, ORIGIN)
    # What a process killed between writing and renaming leaves behind.
    leftover = node.blob_store.root / TEMP_DIR_NAME / "0123456789abcdef.part"
    leftover.write_bytes(instance_bytes[: len(instance_bytes) // 2])

    report = node.integrity.sweep_orphans(grace_seconds=0)

    assert (report.orphans_removed, report.temporary_removed) == (0, 1)
    assert not leftover.exists()
    assert stored.outcome is StoreOutcome.STORED
    assert len(_blob_files(node.blob_store)) == 1  # the acknowledged instance is kept
    assert node.integrity.missing_blobs() == []


@pytest.mark.parametrize("fault", [Fault.AFTER_PUT, Fault.BEFORE_RENAME])
def test_instance_refused_by_a_failing_store_is_stored_once_when_resent_after_recovery(
    node: Node,
    ingest: IngestService,
    faulty_store: FaultyBlobStore,
    instance_bytes: bytes,
    fault: Fault,
) -> None:
    faulty_store.fault = fault
    with pytest.raises(StorageUnavailable):
        ingest.ingest(instance_bytes, ORIGIN)
    faulty_store.fault = Fault.NONE

    stored = ingest.ingest(instance_bytes, ORIGIN)
    node.integrity.sweep_orphans(grace_seconds=0)

    assert stored.outcome is StoreOutcome.STORED
    counts = _row_counts(node)
    assert (counts["instance"], counts["study"], counts["patient"]) == (1, 1, 1)
    [blob] = _blob_files(node.blob_store)
    assert blob.read_bytes() == instance_bytes
    assert node.integrity.missing_blobs() == []
