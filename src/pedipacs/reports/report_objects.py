"""The signed report as a document: a PDF for people, and the same PDF as a DICOM Encapsulated
PDF object in the exam's study, stored through the one ingest path like any image.

The object's UIDs derive from the report and its version (`reports/distribution.py`) and its
bytes from the version alone, so a `report-object` job run twice (a crash after storing, before
the job was marked done) stores an identical object, which ingest acknowledges without a
second copy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, tzinfo

from pedipacs.archive.ingest import IngestService
from pedipacs.dicom.encapsulated_pdf import EncapsulatedPdfHeader, Verification, encapsulated_pdf
from pedipacs.errors import DuplicateInstanceRejected, PedipacsError, StorageUnavailable
from pedipacs.jobs.queue import GiveUp, LeasedJob, RetryLater
from pedipacs.model.origin import Origin
from pedipacs.model.records import StoredInstance
from pedipacs.reports.authoring import ReportService
from pedipacs.reports.distribution import ReportDocument, report_object_uid, report_series_uid
from pedipacs.reports.pdf import report_pdf

JOB_ORIGIN = Origin.job("report-object")


def pdf_filename(document: ReportDocument) -> str:
    """
    >>> from types import SimpleNamespace
    >>> pdf_filename(SimpleNamespace(accession_number="A/1 2", version=3))  # type: ignore[arg-type]
    'report-A-1-2-v3.pdf'
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in document.accession_number)
    return f"report-{safe}-v{document.version}.pdf"


def object_header(document: ReportDocument) -> EncapsulatedPdfHeader:
    assert document.study_instance_uid is not None
    study = document.study_instance_uid
    patient = document.patient
    return EncapsulatedPdfHeader(
        patient_id=patient.patient_id,
        issuer_of_patient_id=patient.issuer,
        patient_name=patient.name or "",
        patient_birth_date=patient.birth_date,
        patient_sex=patient.sex or "",
        study_instance_uid=study,
        accession_number=document.accession_number,
        study_date=document.study_date,
        study_time=document.study_time,
        referring_physician_name=document.referring_physician or "",
        series_instance_uid=report_series_uid(document.report_id, study),
        sop_instance_uid=report_object_uid(document.report_id, document.version, study),
        instance_number=document.version,
        content_datetime=document.observed_at,
        document_title=f"Radiology report {document.accession_number}"
        + (" (amended)" if document.is_correction else ""),
        verification=Verification(
            is_signed=document.is_final,
            verifying_observer_name=document.signed_by_name or document.signed_by,
        ),
    )


class ReportObjectService:
    def __init__(
        self,
        reports: ReportService,
        ingest: IngestService,
        *,
        institution: str | None = None,
        time_zone: tzinfo = UTC,
    ) -> None:
        self._reports = reports
        self._ingest = ingest
        self._institution = institution
        self._time_zone = time_zone

    def _pdf(self, document: ReportDocument) -> bytes:
        return report_pdf(document, institution=self._institution, time_zone=self._time_zone)

    def pdf(self, accession: str, origin: Origin) -> tuple[bytes, str]:
        """The newest released version of the exam's report as a PDF, and a file name."""
        document = self._reports.released_document(accession, origin)
        return self._pdf(document), pdf_filename(document)

    def store(self, report_id: int, version: int) -> StoredInstance | None:
        """Store one signed version in its study; None when the exam has no study to hold it."""
        document = self._reports.document(report_id, version)
        if document.study_instance_uid is None or not document.modalities:
            return None
        pdf = self._pdf(document)
        data = encapsulated_pdf(pdf, object_header(document))
        return self._ingest.ingest(data, JOB_ORIGIN, study_instance_uid=document.study_instance_uid)


def report_object_handler(service: ReportObjectService) -> Callable[[LeasedJob], str]:
    """The `report-object` job handler: payload {report_id, version}."""

    def handle(job: LeasedJob) -> str:
        report_id, version = int(job.payload["report_id"]), int(job.payload["version"])
        try:
            stored = service.store(report_id, version)
        except StorageUnavailable as error:
            raise RetryLater(str(error)) from error
        except DuplicateInstanceRejected:
            # Stored by an earlier attempt whose end was lost, with bytes that differ only by
            # the software that wrote them (an upgrade in between): the report is in the study.
            return f"report {report_id} v{version}: stored by an earlier attempt"
        except PedipacsError as error:
            raise GiveUp(f"{type(error).__name__}: {error}") from error
        if stored is None:
            return f"report {report_id} v{version}: no study arrived for the exam; not stored"
        return (
            f"report {report_id} v{version} stored as {stored.sop_instance_uid} in study "
            f"{stored.study_instance_uid} ({stored.outcome})"
        )

    return handle
