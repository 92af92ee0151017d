"""What happens when a report is released (signed preliminary, final, or amended by an
addendum): durable jobs, enqueued in the signing transaction, that send it on.

- `hl7-oru`: an ORU^R01 to each configured HL7 receiver (sent by `hl7/oru.py`);
- `report-object`: the signed report as an Encapsulated PDF object in the exam's study, so any
  DICOM viewer shows it beside the images (stored by `ReportObjectService`).

Both carry the report and the version they announce, so a job retried after a restart sends
what was signed then, not what the report became later. The Encapsulated PDF's UIDs are
derived from the report and version: a retried job stores the same object again, which the
duplicate policy recognises as identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from pydicom.uid import generate_uid
from sqlalchemy.orm import Session

from pedipacs.jobs.queue import JobQueue
from pedipacs.model.reports import PatientLine, ReportStatus, VersionKind

ORU_JOB = "hl7-oru"
REPORT_OBJECT_JOB = "report-object"
REPORT_JOB_KINDS = (ORU_JOB, REPORT_OBJECT_JOB)


@dataclass(frozen=True, slots=True)
class DistributionTargets:
    """Where released reports go: HL7 receivers as `host:port`, and the archive."""

    hl7_receivers: tuple[str, ...] = ()
    store_in_archive: bool = True


@dataclass(frozen=True, slots=True)
class ReportDocument:
    """One released version of a report with everything a message or a document shows."""

    report_id: int
    version: int
    kind: VersionKind
    status: ReportStatus  # the report's status as of this version
    accession_number: str
    placer_order_number: str | None
    filler_order_number: str | None
    patient: PatientLine
    patient_class: str | None
    referring_physician: str | None
    procedure: str | None
    procedure_code: str | None
    reason: str | None
    study_instance_uid: str | None
    modalities: tuple[str, ...]
    sections: tuple[tuple[str, str], ...]  # (title, text) in the template's order
    addenda: tuple[tuple[str, str, datetime], ...]  # (text, author, at) up to this version
    critical_finding: str | None
    author: str
    signed_by: str | None
    signed_by_name: str | None
    observed_at: datetime  # when this version was released
    ordered_at: datetime | None
    study_date: date | None = None
    study_time: time | None = None

    @property
    def is_final(self) -> bool:
        return self.status.is_signed

    @property
    def is_correction(self) -> bool:
        return self.kind is VersionKind.ADDENDUM


def report_series_uid(report_id: int, study_instance_uid: str) -> str:
    """The series holding a report's Encapsulated PDF objects, the same on every node."""
    return str(generate_uid(entropy_srcs=["pedipacs report series", study_instance_uid,
                                          str(report_id)]))  # fmt: skip


def report_object_uid(report_id: int, version: int, study_instance_uid: str) -> str:
    return str(generate_uid(entropy_srcs=["pedipacs report object", study_instance_uid,
                                          str(report_id), str(version)]))  # fmt: skip


def enqueue_release(
    session: Session,
    jobs: JobQueue,
    targets: DistributionTargets,
    *,
    report_id: int,
    version: int,
    kind: VersionKind,
) -> None:
    """The jobs that send one released version on, in the caller's transaction."""
    subject = f"report:{report_id}"
    for receiver in targets.hl7_receivers:
        jobs.enqueue(
            session,
            ORU_JOB,
            {"report_id": report_id, "version": version, "receiver": receiver},
            subject=subject,
        )
    # The preliminary read is sent to the HIS, but only a signed text becomes part of the
    # study: a DICOM object cannot be withdrawn from every viewer it reached.
    if targets.store_in_archive and kind in (VersionKind.FINAL, VersionKind.ADDENDUM):
        jobs.enqueue(
            session,
            REPORT_OBJECT_JOB,
            {"report_id": report_id, "version": version},
            subject=subject,
        )
