"""IntegrityService: blobs without an index row are swept; index rows without blobs reported."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pedipacs.db.engine import Database
from pedipacs.db.tables import Instance
from pedipacs.storage.blob_store import BlobStore

log = logging.getLogger(__name__)
KEY_BATCH = 500


@dataclass(frozen=True, slots=True)
class SweepReport:
    blobs_seen: int
    orphans_removed: int
    temporary_removed: int


class IntegrityService:
    def __init__(self, database: Database, blob_store: BlobStore) -> None:
        self._database = database
        self._blob_store = blob_store

    def sweep_orphans(self, grace_seconds: float) -> SweepReport:
        """Delete blobs older than the grace period that no index row references.

        Such blobs come from a crash (or a full disk) between writing the bytes and committing
        the index row, so they were never acknowledged. The grace period protects writes in
        flight on other nodes sharing the storage.
        """
        older_than = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        temporary = 0
        sweep_temporary = getattr(self._blob_store, "sweep_temporary", None)
        if sweep_temporary is not None:
            temporary = sweep_temporary(older_than)
        seen = removed = 0
        batch: list[str] = []
        for blob in self._blob_store.iter_blobs():
            seen += 1
            if blob.modified_at < older_than:
                batch.append(blob.key)
            if len(batch) >= KEY_BATCH:
                removed += self._remove_unreferenced(batch)
                batch = []
        removed += self._remove_unreferenced(batch)
        if removed or temporary:
            log.warning("swept %d orphan blob(s) and %d temporary file(s)", removed, temporary)
        return SweepReport(seen, removed, temporary)

    def missing_blobs(self) -> list[str]:
        """SOP Instance UIDs whose bytes are missing (should always be empty)."""
        missing: list[str] = []
        with self._database.reading() as session:
            for sop_instance_uid, key in session.execute(
                select(Instance.sop_instance_uid, Instance.blob_key)
            ):
                if not self._blob_store.exists(key):
                    missing.append(sop_instance_uid)
        return missing

    def _remove_unreferenced(self, keys: list[str]) -> int:
        if not keys:
            return 0
        with self._database.reading() as session:
            referenced = set(
                session.scalars(select(Instance.blob_key).where(Instance.blob_key.in_(keys)))
            )
        orphans = [key for key in keys if key not in referenced]
        for key in orphans:
            self._blob_store.delete(key)
        return len(orphans)
