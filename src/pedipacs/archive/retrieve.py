"""RetrieveService: find the stored instances a retrieve names, and hand out their bytes."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from sqlalchemy.exc import OperationalError

from pedipacs.db.engine import Database
from pedipacs.db.query_sql import compile_locations
from pedipacs.dicom.header import read_dataset_header
from pedipacs.dicom.json_model import metadata_json
from pedipacs.dicom.patient_coercion import corrected_instance, corrected_metadata
from pedipacs.dicom.transfer_syntax import transcode
from pedipacs.errors import InvalidQueryError, PatientNotInCareError, StorageUnavailable
from pedipacs.model.origin import Origin
from pedipacs.model.query import Query
from pedipacs.model.records import InstanceLocation, InstanceMetadata, PatientDemographics
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record
from pedipacs.storage.blob_store import BlobStore

# A client's frame and rendered-image reads of one study are audited once per this many seconds.
READ_AUDIT_WINDOW_SECONDS = 300.0


class _RecentReads:
    """Which (client, purpose, study) reads were audited lately. In memory only: after a restart
    a read is audited again, never left out."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._seen: dict[tuple[str | None, str | None, str, str], float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(origin: Origin, purpose: str, study: str) -> tuple[str | None, str | None, str, str]:
        return (origin.who, origin.remote_host, purpose, study)

    def all_seen(self, origin: Origin, purpose: str, studies: set[str]) -> bool:
        now = time.monotonic()
        with self._lock:
            return bool(studies) and all(
                now - self._seen.get(self._key(origin, purpose, study), -self._window)
                < self._window
                for study in studies
            )

    def remember(self, origin: Origin, purpose: str, studies: set[str]) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:  # forget the expired ones now and then
                self._seen = {k: t for k, t in self._seen.items() if now - t < self._window}
            for study in studies:
                self._seen[self._key(origin, purpose, study)] = now


class RetrieveService:
    def __init__(self, database: Database, blob_store: BlobStore) -> None:
        self._database = database
        self._blob_store = blob_store
        self._recent_reads = _RecentReads(READ_AUDIT_WINDOW_SECONDS)

    def locate(
        self, query: Query, origin: Origin, *, purpose: str, is_image_read: bool = False
    ) -> list[InstanceLocation]:
        """Every stored instance under the entities `query` names, audited as `purpose`.

        `is_image_read` marks the many small reads a viewer makes while a study is open (one
        per frame, rendered image or thumbnail): each client's reads of a study are audited
        once per window instead of once per frame.
        """
        rows = self._rows(query, with_metadata=False)
        locations = self._locations(rows)
        self._refuse_outside_scope(locations, origin, purpose)
        if is_image_read:
            studies = {location.study_instance_uid for location in locations}
            if self._recent_reads.all_seen(origin, purpose, studies):
                return locations
        self._audit_or_refuse(locations, origin, purpose)
        if is_image_read:
            self._recent_reads.remember(origin, purpose, studies)
        return locations

    def metadata(self, query: Query, origin: Origin) -> list[InstanceMetadata]:
        """The DICOM JSON of every instance under the entities `query` names (WADO-RS metadata).

        Served from the JSON encoded at ingest; an instance stored before that existed has its
        metadata read from its file.
        """
        rows = self._rows(query, with_metadata=True)
        locations = self._locations(rows)
        self._refuse_outside_scope(locations, origin, "metadata")
        self._audit_or_refuse(locations, origin, "metadata")
        return [
            InstanceMetadata(location, self._corrected(location, row.dicom_json))
            for location, row in zip(locations, rows, strict=True)
        ]

    def _corrected(self, location: InstanceLocation, stored_json: str | None) -> str:
        if stored_json is None:
            data = self.read_bytes(location)  # corrected already, when it needs to be
            return metadata_json(read_dataset_header(data), data)
        if location.corrected_patient is None:
            return stored_json
        return corrected_metadata(stored_json, location.corrected_patient)

    def _rows(self, query: Query, *, with_metadata: bool) -> Sequence[Any]:
        if not query.constraints:
            raise InvalidQueryError("a retrieve must name at least one unique key")
        statement = compile_locations(query, with_metadata=with_metadata)
        try:
            with self._database.reading() as session:
                return session.execute(statement).all()
        except OperationalError as error:
            raise StorageUnavailable(f"the index database cannot be read: {error.orig}") from error

    def _refuse_outside_scope(
        self, locations: list[InstanceLocation], origin: Origin, purpose: str
    ) -> None:
        """A clinician asking for a patient outside their care gets PatientNotInCareError
        (audited), which tells them how to open it in an emergency."""
        if origin.patient_scope is None:
            return
        outside = sorted({loc.patient_id for loc in locations if not origin.sees(loc.patient_id)})
        if not outside:
            return
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    event=AuditEventId.SECURITY_ALERT,
                    action="R",
                    origin=origin,
                    outcome=AuditOutcome.MINOR_FAILURE,
                    patient_id=outside[0],
                    detail=f"refused {purpose}: patient(s) {', '.join(outside)} not in the "
                    f"care of {origin.who}",
                ),
            )
        raise PatientNotInCareError(
            "this patient is not in your care; to see the images in an emergency, break the "
            "glass with a stated reason"
        )

    def _audit_or_refuse(
        self, locations: list[InstanceLocation], origin: Origin, purpose: str
    ) -> None:
        try:
            self._audit(locations, origin, purpose)
        except OperationalError as error:
            # No audit record, no access: patient data leaves only when the access is on record.
            raise StorageUnavailable(f"the audit trail cannot be written: {error.orig}") from error

    def open(self, location: InstanceLocation) -> BinaryIO:
        """The instance's bytes as a file object, for streaming; the caller closes it."""
        if location.corrected_patient is not None:
            return BytesIO(self.read_bytes(location))
        return self._blob_store.open(location.blob_key)

    def transcoded(self, location: InstanceLocation, transfer_syntax_uid: str) -> bytes:
        """The instance as a Part 10 object in another transfer syntax (TranscodingError if not)."""
        with self.local_file(location) as path:
            dataset = dcmread(path)
        converted = transcode(dataset, transfer_syntax_uid)
        buffer = BytesIO()
        converted.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    @staticmethod
    def _locations(rows: Sequence[Any]) -> list[InstanceLocation]:
        return [
            InstanceLocation(
                sop_instance_uid=row.sop_instance_uid,
                sop_class_uid=row.sop_class_uid,
                transfer_syntax_uid=row.transfer_syntax_uid,
                blob_key=row.blob_key,
                size=row.size,
                patient_id=row.patient_id,
                study_instance_uid=row.study_instance_uid,
                series_instance_uid=row.series_instance_uid,
                corrected_patient=PatientDemographics(
                    patient_id=row.patient_id,
                    issuer_of_patient_id=row.issuer_of_patient_id,
                    patient_name=row.patient_name,
                    birth_date=row.patient_birth_date,
                    sex=row.patient_sex,
                )
                if row.identity_changed
                else None,
            )
            for row in rows
        ]

    def local_path(self, location: InstanceLocation) -> Path | None:
        """The stored file itself when the store is local and the file can be sent as it is
        (for zero-copy sending), else None."""
        if location.corrected_patient is not None:
            return None
        return self._blob_store.local_path(location.blob_key)

    @contextmanager
    def local_file(self, location: InstanceLocation) -> Iterator[Path]:
        """A local file with the instance's bytes: the stored file itself when it can be sent
        as it is, else a temporary copy (a remote store, a corrected patient)."""
        path = self.local_path(location)
        if path is not None:
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="pedipacs-retrieve-") as folder:
            copy = Path(folder) / "instance.dcm"
            if location.corrected_patient is not None:
                copy.write_bytes(self.read_bytes(location))
            else:
                with self._blob_store.open(location.blob_key) as source, copy.open("wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
            yield copy

    def read_bytes(self, location: InstanceLocation) -> bytes:
        """The instance's bytes: as stored, or with the patient the archive knows now."""
        with self._blob_store.open(location.blob_key) as handle:
            data = handle.read()
        if location.corrected_patient is None:
            return data
        return corrected_instance(data, location.corrected_patient)

    def _audit(self, locations: list[InstanceLocation], origin: Origin, purpose: str) -> None:
        studies = sorted({(loc.patient_id, loc.study_instance_uid) for loc in locations})
        with self._database.unit_of_work() as session:
            entries: list[tuple[str | None, str | None]] = list(studies) or [(None, None)]
            for patient_id, study_uid in entries:
                count = sum(1 for loc in locations if loc.study_instance_uid == study_uid)
                record(
                    session,
                    AuditRecord(
                        event=AuditEventId.BEGIN_TRANSFERRING,
                        action="R",
                        origin=origin,
                        patient_id=patient_id,
                        study_instance_uid=study_uid,
                        detail=f"{purpose}: {count} instance(s)",
                    ),
                )
