"""The one ingest path: C-STORE, STOW-RS, folder import and prefetch all come through here.

The order is fixed: parse the header, validate, apply the duplicate policy, write the blob
(temporary file, fsync, rename), then index, change feed and audit in one transaction. The
caller acknowledges only after `ingest` returns. A crash between the blob write and the commit
leaves an orphan blob, which `sweep_orphans` removes; an index row never points at missing bytes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from pedipacs import metrics
from pedipacs.archive import index
from pedipacs.archive.duplicates import DuplicateDecision, StoredIdentity, decide, record_conflict
from pedipacs.config import DuplicatePolicy
from pedipacs.db.engine import Database
from pedipacs.dicom.header import InstanceHeader, header_from_dataset, read_dataset_header
from pedipacs.dicom.json_model import metadata_json
from pedipacs.dicom.part10 import dataset_sha256
from pedipacs.errors import (
    DuplicateInstanceRejected,
    InconsistentIdentityError,
    ObjectTooLargeError,
    PedipacsError,
    StorageUnavailable,
    StudyMismatchError,
)
from pedipacs.model.origin import Door, Origin
from pedipacs.model.records import StoredInstance, StoreOutcome
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record
from pedipacs.storage.blob_store import BlobInfo, BlobStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def new_blob_key() -> str:
    """An opaque key, never derived from a UID: the day of arrival and a random name.

    Day folders are created once a day (few directory fsyncs), and 256 sub-folders keep each
    folder small even at tens of thousands of images a day.
    """
    name = uuid.uuid4().hex
    return f"{datetime.now(UTC):%Y/%m/%d}/{name[:2]}/{name}.dcm"


@dataclass(frozen=True, slots=True)
class _Indexed:
    outcome: StoreOutcome
    replaced_blob_key: str | None = None


class IngestService:
    def __init__(
        self,
        database: Database,
        blob_store: BlobStore,
        *,
        duplicate_policy: DuplicatePolicy,
        max_object_size: int,
    ) -> None:
        self._database = database
        self._blob_store = blob_store
        self._duplicate_policy = duplicate_policy
        self._max_object_size = max_object_size

    def ingest(
        self, data: bytes, origin: Origin, *, study_instance_uid: str | None = None
    ) -> StoredInstance:
        """Store one DICOM Part 10 object durably and index it.

        With `study_instance_uid`, an object of another study is refused (StudyMismatchError).

        Raises an InvalidInput subclass for bad objects, DuplicateInstanceRejected or
        InconsistentIdentityError per the duplicate policy, StorageUnavailable when the
        bytes or the index cannot be written. Nothing is left half-written on any error.
        """
        started = time.perf_counter()
        try:
            stored = self._ingest(data, origin, study_instance_uid)
        except PedipacsError as error:
            metrics.INGEST_ERRORS.labels(type(error).__name__).inc()
            metrics.INSTANCES_RECEIVED.labels(str(origin.door), "refused").inc()
            raise
        metrics.INSTANCES_RECEIVED.labels(str(origin.door), stored.outcome.lower()).inc()
        metrics.INGEST_SECONDS.observe(time.perf_counter() - started)
        return stored

    def _ingest(
        self, data: bytes, origin: Origin, study_instance_uid: str | None
    ) -> StoredInstance:
        if len(data) > self._max_object_size:
            raise ObjectTooLargeError(
                f"object of {len(data)} bytes exceeds the maximum of {self._max_object_size}"
            )
        dataset = read_dataset_header(data)
        header = header_from_dataset(dataset)
        if study_instance_uid is not None and header.study_instance_uid != study_instance_uid:
            raise StudyMismatchError(
                f"SOP Instance {header.sop_instance_uid} belongs to study "
                f"{header.study_instance_uid}, not {study_instance_uid}"
            )
        sha256 = dataset_sha256(data)
        with self._database.reading() as session:
            stored = index.stored_identity(session, header.sop_instance_uid)
        decision = self._decide(stored, header, sha256)
        if stored is not None and decision is not DuplicateDecision.REPLACE:
            return self._settle_duplicate(decision, stored, header, sha256, len(data), origin)

        blob = self._blob_store.put(new_blob_key(), (data,))
        metrics.BYTES_STORED.inc(blob.size)
        try:
            indexed = self._index(header, metadata_json(dataset, data), blob, sha256, origin)
        except BaseException:
            self._blob_store.delete(blob.key)
            raise
        if indexed.outcome is StoreOutcome.DUPLICATE_IGNORED:
            self._blob_store.delete(blob.key)  # a concurrent sender stored it first
        if indexed.replaced_blob_key:
            self._blob_store.delete(indexed.replaced_blob_key)
        return _stored(header, sha256, len(data), indexed.outcome)

    def _decide(
        self, stored: StoredIdentity | None, header: InstanceHeader, sha256: str
    ) -> DuplicateDecision:
        return decide(
            self._duplicate_policy,
            stored,
            sha256=sha256,
            study_instance_uid=header.study_instance_uid,
            series_instance_uid=header.series_instance_uid,
        )

    def _settle_duplicate(
        self,
        decision: DuplicateDecision,
        stored: StoredIdentity,
        header: InstanceHeader,
        sha256: str,
        size: int,
        origin: Origin,
    ) -> StoredInstance:
        """Answer a re-sent object without writing bytes; record every real conflict."""
        if decision is DuplicateDecision.IGNORE_IDENTICAL:
            return _stored(header, sha256, size, StoreOutcome.DUPLICATE_IGNORED)

        def write_conflict(session: Session) -> None:
            record_conflict(
                session,
                decision=decision,
                sop_instance_uid=header.sop_instance_uid,
                stored=stored,
                received_sha256=sha256,
                study_instance_uid=header.study_instance_uid,
                series_instance_uid=header.series_instance_uid,
                origin=origin,
            )
            record(
                session,
                AuditRecord(
                    event=AuditEventId.INSTANCES_TRANSFERRED,
                    action="C",
                    origin=origin,
                    outcome=AuditOutcome.MINOR_FAILURE,
                    patient_id=header.patient_id,
                    study_instance_uid=header.study_instance_uid,
                    detail=f"duplicate {header.sop_instance_uid}: {decision}",
                ),
            )

        self._write(write_conflict)
        if decision is DuplicateDecision.KEEP_STORED:
            return _stored(header, sha256, size, StoreOutcome.CONFLICT_KEPT_STORED)
        if decision is DuplicateDecision.REJECT_IDENTITY:
            raise InconsistentIdentityError(
                f"SOP Instance {header.sop_instance_uid} is stored under study "
                f"{stored.study_instance_uid}, series {stored.series_instance_uid}"
            )
        raise DuplicateInstanceRejected(
            f"SOP Instance {header.sop_instance_uid} is stored with different content"
        )

    def _index(
        self, header: InstanceHeader, metadata: str, blob: BlobInfo, sha256: str, origin: Origin
    ) -> _Indexed:
        def work(session: Session) -> _Indexed:
            # Checked again inside the write transaction: another sender may have won the race.
            stored = index.stored_identity(session, header.sop_instance_uid)
            decision = self._decide(stored, header, sha256)
            if decision is DuplicateDecision.NEW:
                index.add_instance(
                    session,
                    header,
                    blob,
                    sha256,
                    origin.remote_ae,
                    metadata,
                    # Files imported from a folder (priors, outside studies) have no order.
                    unmatched_is_exception=origin.door is not Door.CLI,
                )
                outcome = StoreOutcome.STORED
            elif decision is DuplicateDecision.REPLACE and stored is not None:
                index.replace_instance(session, header, blob, sha256, origin.remote_ae, metadata)
                outcome = StoreOutcome.REPLACED
            else:
                return _Indexed(StoreOutcome.DUPLICATE_IGNORED)
            record(
                session,
                AuditRecord(
                    event=AuditEventId.INSTANCES_TRANSFERRED,
                    action="C" if outcome is StoreOutcome.STORED else "U",
                    origin=origin,
                    patient_id=header.patient_id,
                    study_instance_uid=header.study_instance_uid,
                    detail=header.sop_instance_uid,
                ),
            )
            return _Indexed(outcome, stored.blob_key if stored else None)

        for _ in range(3):
            try:
                return self._write(work)
            except IntegrityError:
                # A concurrent insert of the same UID won; the next attempt sees it.
                continue
        return self._write(work)

    def _write(self, work: Callable[[Session], _T]) -> _T:
        try:
            return self._database.transaction(work)
        except OperationalError as error:
            log.error("index write failed: %s", error.orig)
            raise StorageUnavailable(
                f"the index database cannot be written: {error.orig}"
            ) from error


def _stored(
    header: InstanceHeader, sha256: str, size: int, outcome: StoreOutcome
) -> StoredInstance:
    return StoredInstance(
        patient_id=header.patient_id,
        study_instance_uid=header.study_instance_uid,
        series_instance_uid=header.series_instance_uid,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        transfer_syntax_uid=header.transfer_syntax_uid,
        size=size,
        sha256=sha256,
        outcome=outcome,
    )
