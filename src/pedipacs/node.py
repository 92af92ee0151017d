"""The composition root: the one place that builds the database, storage, services and doors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydicom import config as pydicom_config

from pedipacs.archive.commitment import CommitmentService
from pedipacs.archive.ingest import IngestService
from pedipacs.archive.integrity import IntegrityService, SweepReport
from pedipacs.archive.peers import PeerService
from pedipacs.archive.query import QueryService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.config import Settings
from pedipacs.db import migrate
from pedipacs.db.engine import Database
from pedipacs.jobs.queue import Backoff, JobQueue
from pedipacs.reports.authoring import ReportService
from pedipacs.reports.clinical_records import ClinicalRecordService
from pedipacs.reports.critical import CriticalResultService
from pedipacs.reports.distribution import DistributionTargets
from pedipacs.reports.reading import ReadingWorklistService
from pedipacs.reports.report_objects import ReportObjectService
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.timeline import PatientTimelineService
from pedipacs.reports.turnaround import TurnaroundService
from pedipacs.ris.inbox import Hl7Inbox
from pedipacs.ris.orders import OrderService
from pedipacs.ris.patients import PatientService
from pedipacs.ris.performed import PerformedStepService
from pedipacs.ris.reconcile import ExceptionService
from pedipacs.security.access import AccessPolicy
from pedipacs.security.accounts import AccountService, SessionRules
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
    commitments: CommitmentService
    accounts: AccountService
    access: AccessPolicy
    patients: PatientService
    orders: OrderService
    performed_steps: PerformedStepService
    hl7_inbox: Hl7Inbox
    integrity: IntegrityService
    audit: AuditTrail
    exceptions: ExceptionService
    jobs: JobQueue
    report_templates: ReportTemplateService
    reports: ReportService
    report_objects: ReportObjectService
    reading: ReadingWorklistService
    critical_results: CriticalResultService
    timelines: PatientTimelineService
    turnaround: TurnaroundService
    clinical_records: ClinicalRecordService
    # Set when several processes share metrics (prometheus_client multiprocess mode).
    metrics_dir: Path | None = None
    _dimse_servers: list[Any] = field(default_factory=list, repr=False)

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
        access = AccessPolicy(database, break_glass=timedelta(minutes=settings.break_glass_minutes))
        jobs = JobQueue(
            database,
            max_attempts=settings.job_max_attempts,
            backoff=Backoff(first=timedelta(seconds=settings.job_retry_seconds)),
        )
        templates = ReportTemplateService(database)
        claim = timedelta(minutes=settings.reading_claim_minutes)
        ingest = IngestService(
            database,
            blob_store,
            duplicate_policy=settings.duplicate_policy,
            max_object_size=settings.max_object_size,
        )
        reports = ReportService(
            database,
            templates,
            jobs,
            targets=DistributionTargets(
                hl7_receivers=tuple(settings.hl7_report_receivers),
                store_in_archive=settings.store_report_objects,
            ),
            claim_duration=claim,
        )
        return cls(
            settings=settings,
            database=database,
            blob_store=blob_store,
            ingest=ingest,
            queries=QueryService(database, max_results=settings.max_query_results),
            retrieve=RetrieveService(database, blob_store),
            peers=PeerService(
                database, access, accept_unknown_calling_aes=settings.accept_unknown_calling_aes
            ),
            commitments=CommitmentService(
                database,
                retry_seconds=settings.commitment_retry_seconds,
                max_attempts=settings.commitment_max_attempts,
            ),
            accounts=AccountService(
                database,
                SessionRules(
                    idle=timedelta(minutes=settings.session_idle_minutes),
                    maximum=timedelta(hours=settings.session_max_hours),
                    max_failures=settings.signin_max_failures,
                    lockout=timedelta(minutes=settings.signin_lockout_minutes),
                ),
            ),
            access=access,
            patients=PatientService(database),
            orders=OrderService(database),
            performed_steps=PerformedStepService(database),
            hl7_inbox=Hl7Inbox(database),
            integrity=IntegrityService(database, blob_store),
            audit=AuditTrail(database),
            exceptions=ExceptionService(database),
            jobs=jobs,
            report_templates=templates,
            reports=reports,
            report_objects=ReportObjectService(
                reports, ingest, time_zone=ZoneInfo(settings.timezone)
            ),
            reading=ReadingWorklistService(
                database,
                claim_duration=claim,
                intensive_care_units=settings.intensive_care_units,
            ),
            critical_results=CriticalResultService(database),
            timelines=PatientTimelineService(database),
            turnaround=TurnaroundService(
                database,
                targets=settings.turnaround_target_minutes,
                timezone=settings.timezone,
            ),
            clinical_records=ClinicalRecordService(database, templates),
            metrics_dir=metrics_dir,
        )

    def migrate(self) -> None:
        migrate.upgrade(self.settings.resolved_database_url)

    def sweep_orphans(self) -> SweepReport:
        return self.integrity.sweep_orphans(self.settings.orphan_grace_seconds)

    def start_dimse(self) -> None:
        """Listen for DICOM associations in background threads: on the DICOM port, and with a
        certificate configured also on the DICOM TLS port, with the same handlers."""
        from ssl import SSLContext

        from pedipacs.dimse.server import DimseServices, build_ae, event_handlers, start_server
        from pedipacs.security.tls import server_context

        settings = self.settings
        ae = build_ae(
            settings.ae_title,
            max_pdu_size=settings.max_pdu_size,
            max_associations=settings.max_associations,
            network_timeout=settings.network_timeout,
        )
        services = DimseServices(
            self.ingest,
            self.queries,
            self.retrieve,
            self.peers,
            commitments=self.commitments,
            performed_steps=self.performed_steps,
        )
        handlers = event_handlers(services, settings.ae_title)
        listeners: list[tuple[int, SSLContext | None]] = [(settings.dicom_port, None)]
        if settings.tls_certificate_file is not None and settings.tls_key_file is not None:
            tls = server_context(
                settings.tls_certificate_file, settings.tls_key_file, settings.tls_ca_file
            )
            listeners.append((settings.dicom_tls_port, tls))
        for port, ssl_context in listeners:
            self._dimse_servers.append(
                start_server(
                    ae,
                    settings.host,
                    port,
                    handlers,
                    max_object_size=settings.max_object_size,
                    ssl_context=ssl_context,
                    on_handshake_failure=self.peers.record_failed_handshake,
                )
            )
            log.info(
                "DICOM %s listening on %s:%d%s",
                settings.ae_title,
                settings.host,
                port,
                "" if ssl_context is None else " with TLS",
            )

    def stop(self) -> None:
        while self._dimse_servers:
            self._dimse_servers.pop().shutdown()
        self.database.dispose()
