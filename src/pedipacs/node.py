"""The composition root: the one place that builds the database, storage, services and doors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config

from pedipacs.archive.ingest import IngestService
from pedipacs.archive.integrity import IntegrityService, SweepReport
from pedipacs.archive.peers import PeerService
from pedipacs.archive.query import QueryService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.config import Settings
from pedipacs.db import migrate
from pedipacs.db.engine import Database
from pedipacs.security.audit import AuditTrail
from pedipacs.storage.filesystem import FilesystemBlobStore

log = logging.getLogger(__name__)


@dataclass
class Node:
    settings: Settings
    database: Database
    blob_store: FilesystemBlobStore
    ingest: IngestService
    queries: QueryService
    retrieve: RetrieveService
    peers: PeerService
    integrity: IntegrityService
    audit: AuditTrail
    # Set when several processes share metrics (prometheus_client multiprocess mode).
    metrics_dir: Path | None = None
    _dimse_server: Any = field(default=None, repr=False)

    @staticmethod
    def configure_libraries() -> None:
        """Library-wide settings: modalities send out-of-range values every day; pedipacs keeps
        the bytes and indexes what it can instead of warning on every read."""
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics_dir: Path | None = None) -> Node:
        cls.configure_libraries()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.resolved_database_url)
        blob_store = FilesystemBlobStore(settings.resolved_storage_dir)
        return cls(
            settings=settings,
            database=database,
            blob_store=blob_store,
            ingest=IngestService(
                database,
                blob_store,
                duplicate_policy=settings.duplicate_policy,
                max_object_size=settings.max_object_size,
            ),
            queries=QueryService(database),
            retrieve=RetrieveService(database, blob_store),
            peers=PeerService(
                database, accept_unknown_calling_aes=settings.accept_unknown_calling_aes
            ),
            integrity=IntegrityService(database, blob_store),
            audit=AuditTrail(database),
            metrics_dir=metrics_dir,
        )

    def migrate(self) -> None:
        migrate.upgrade(self.settings.resolved_database_url)

    def sweep_orphans(self) -> SweepReport:
        return self.integrity.sweep_orphans(self.settings.orphan_grace_seconds)

    def start_dimse(self) -> None:
        """Listen for DICOM associations in background threads."""
        from pedipacs.dimse.server import DimseServices, build_ae, event_handlers, start_server

        settings = self.settings
        ae = build_ae(
            settings.ae_title,
            max_pdu_size=settings.max_pdu_size,
            max_associations=settings.max_associations,
            network_timeout=settings.network_timeout,
        )
        services = DimseServices(self.ingest, self.queries, self.retrieve, self.peers)
        self._dimse_server = start_server(
            ae,
            settings.host,
            settings.dicom_port,
            event_handlers(services, settings.ae_title),
            max_object_size=settings.max_object_size,
        )
        log.info(
            "DICOM %s listening on %s:%d", settings.ae_title, settings.host, settings.dicom_port
        )

    def stop(self) -> None:
        if self._dimse_server is not None:
            self._dimse_server.shutdown()
            self._dimse_server = None
        self.database.dispose()
