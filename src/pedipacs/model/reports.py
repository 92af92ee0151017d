"""Reading and reporting as plain values: report statuses and versions, the reading worklist's
entries, critical results, a child's imaging timeline and turnaround figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from pedipacs.model.ris import OrderStatus, Priority


class ReportStatus(StrEnum):
    """Where a report is (FHIR DiagnosticReport.status uses the same words)."""

    DRAFT = "draft"  # being written; seen by its author and other radiologists only
    PRELIMINARY = "preliminary"  # signed as preliminary (the night-time emergency read)
    FINAL = "final"  # signed; never edited again
    AMENDED = "amended"  # final, followed by one or more addenda

    @property
    def is_signed(self) -> bool:
        return self in (ReportStatus.FINAL, ReportStatus.AMENDED)

    @property
    def is_released(self) -> bool:
        """Shown to clinicians and sent out: preliminary, final or amended."""
        return self is not ReportStatus.DRAFT


class VersionKind(StrEnum):
    DRAFT = "draft"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    ADDENDUM = "addendum"


class Urgency(StrEnum):
    """The reading worklist's order of precedence, most urgent first."""

    STAT = "stat"
    EMERGENCY = "emergency"  # the emergency department, intensive care, or ASAP
    INPATIENT = "inpatient"
    OUTPATIENT = "outpatient"

    @property
    def rank(self) -> int:
        return list(Urgency).index(self)


class Shift(StrEnum):
    """When an exam came, for turnaround figures (the hospital's local time)."""

    DAY = "day"  # Monday to Friday, 08:00 to 17:59
    NIGHT = "night"  # Monday to Friday outside those hours
    WEEKEND = "weekend"  # Saturday and Sunday


@dataclass(frozen=True, slots=True)
class PatientLine:
    """Who an exam or report is about, as pages and messages show them."""

    patient_id: str
    issuer: str
    name: str | None  # DICOM PN form
    birth_date: date | None
    sex: str | None


@dataclass(frozen=True, slots=True)
class ReportVersionRecord:
    number: int
    kind: VersionKind
    sections: dict[str, str]
    addendum: str | None
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Addendum:
    text: str
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CriticalResultRecord:
    id: int
    accession_number: str
    patient: PatientLine
    finding: str
    flagged_by: str
    flagged_at: datetime
    referring_physician: str | None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    acknowledgement_note: str | None = None

    @property
    def is_acknowledged(self) -> bool:
        return self.acknowledged_at is not None


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A report as it stands, with the exam it belongs to."""

    id: int
    accession_number: str
    study_instance_uids: tuple[str, ...]
    patient: PatientLine
    order_status: OrderStatus
    priority: Priority
    procedure: str | None
    reason: str | None
    referring_physician: str | None
    status: ReportStatus
    template_key: str
    sections: dict[str, str]
    revision: int
    author: str
    created_at: datetime
    updated_at: datetime
    preliminary_at: datetime | None
    preliminary_by: str | None
    signed_at: datetime | None
    signed_by: str | None
    signed_by_name: str | None
    addenda: tuple[Addendum, ...] = ()
    critical_results: tuple[CriticalResultRecord, ...] = ()
    versions: tuple[ReportVersionRecord, ...] = ()

    @property
    def is_critical(self) -> bool:
        return bool(self.critical_results)


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """What a radiologist narrows the reading worklist to; empty fields narrow nothing."""

    modality: str | None = None
    body_part: str | None = None
    location: str | None = None
    department: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ReadingItem:
    """One exam waiting for its (final) report."""

    accession_number: str
    patient: PatientLine
    urgency: Urgency
    priority: Priority
    patient_class: str | None
    location: str | None
    department: str | None
    reason: str | None
    procedure: str | None
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    study_instance_uids: tuple[str, ...]
    waiting_since: datetime  # when the images arrived (or the order, without a time of arrival)
    number_of_priors: int
    report_status: ReportStatus | None
    claimed_by: str | None
    claim_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReadingPage:
    items: tuple[ReadingItem, ...]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    accession_number: str
    username: str
    claimed_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PriorStudy:
    """An earlier (or other) study of the same child, for the radiologist to compare."""

    study_instance_uid: str
    study_date: date | None
    study_description: str | None
    modalities: tuple[str, ...]
    accession_number: str | None
    number_of_instances: int
    report_status: ReportStatus | None


@dataclass(frozen=True, slots=True)
class TimelineExam:
    """One exam of a child's imaging timeline: the order (when there is one), its studies and
    its released report."""

    accession_number: str | None
    status: OrderStatus | None
    priority: Priority | None
    procedure: str | None
    reason: str | None
    exam_date: date | None
    ordered_at: datetime | None
    modalities: tuple[str, ...]
    study_instance_uids: tuple[str, ...]
    number_of_instances: int
    report: ReportRecord | None  # released reports only (preliminary, final, amended)


@dataclass(frozen=True, slots=True)
class PatientTimeline:
    patient: PatientLine
    other_identifiers: tuple[str, ...]
    exams: tuple[TimelineExam, ...]
    open_critical_results: tuple[CriticalResultRecord, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TurnaroundFigures:
    """Medians and 90th percentiles, in minutes, of one group of exams."""

    group: str  # e.g. "US", "STAT", "night"
    count: int
    order_to_images_p50: float | None
    order_to_images_p90: float | None
    images_to_preliminary_p50: float | None
    images_to_preliminary_p90: float | None
    images_to_final_p50: float | None
    images_to_final_p90: float | None


@dataclass(frozen=True, slots=True)
class OverdueExam:
    accession_number: str
    patient: PatientLine
    priority: Priority
    modalities: tuple[str, ...]
    waiting_since: datetime
    minutes_waiting: int
    target_minutes: int
    report_status: ReportStatus | None


@dataclass(frozen=True, slots=True)
class TurnaroundReport:
    since: datetime
    until: datetime
    overall: TurnaroundFigures
    by_modality: tuple[TurnaroundFigures, ...]
    by_priority: tuple[TurnaroundFigures, ...]
    by_shift: tuple[TurnaroundFigures, ...]
    overdue: tuple[OverdueExam, ...]
