"""Clinical records as other systems read them (the FHIR door's Patient, ServiceRequest,
ImagingStudy and DiagnosticReport), and the criteria they are searched by.

Criteria are protocol-neutral: the FHIR door turns its search parameters into them
(`fhir/search_params.py`), `reports/clinical_records.py` turns them into SQL. Each criterion
is a tuple of groups: every group must match, and within a group any one value (FHIR's
repeated parameter and comma). An empty group matches nothing (a value that can name no
record, e.g. an identifier of a system pedipacs does not issue).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, time
from enum import StrEnum
from typing import Generic, TypeAlias, TypeVar

from pedipacs.model.reports import Addendum, ReportStatus
from pedipacs.model.ris import OrderStatus, Priority

T = TypeVar("T")
# Every group must match; within a group, any value.
AllOf: TypeAlias = tuple[tuple[T, ...], ...]

DEFAULT_COUNT = 50
MAX_COUNT = 200


class IdentifierKind(StrEnum):
    PATIENT_ID = "patient-id"
    ACCESSION_NUMBER = "accession-number"
    PLACER_ORDER_NUMBER = "placer-order-number"
    FILLER_ORDER_NUMBER = "filler-order-number"
    STUDY_INSTANCE_UID = "study-instance-uid"


@dataclass(frozen=True, slots=True)
class IdentifierMatch:
    """An identifier searched for. `value` None: any value; `issuer` (patient IDs only) None:
    any issuer, '': none."""

    kind: IdentifierKind
    value: str | None = None
    issuer: str | None = None

    def __str__(self) -> str:
        issuer = f"^^^{self.issuer}" if self.issuer else ""
        return f"{self.kind}:{self.value if self.value is not None else '*'}{issuer}"


@dataclass(frozen=True, slots=True)
class DateRange:
    """From `earliest` to `latest`, both included; None leaves that end open."""

    earliest: date | None = None
    latest: date | None = None

    def __str__(self) -> str:
        """
        >>> str(DateRange(date(2019, 1, 1), date(2019, 12, 31)))
        '2019-01-01..2019-12-31'
        """
        low = self.earliest.isoformat() if self.earliest else ""
        high = self.latest.isoformat() if self.latest else ""
        return f"{low}..{high}"


@dataclass(frozen=True, slots=True)
class PatientCriteria:
    keys: AllOf[str] = ()
    identifiers: AllOf[IdentifierMatch] = ()
    names: AllOf[str] = ()  # the start of any name part
    families: AllOf[str] = ()
    givens: AllOf[str] = ()
    birth_dates: AllOf[DateRange] = ()
    sexes: AllOf[str | None] = ()  # M, F, O; None: not known
    offset: int = 0
    count: int = DEFAULT_COUNT


@dataclass(frozen=True, slots=True)
class OrderCriteria:
    keys: AllOf[str] = ()
    patients: AllOf[str] = ()  # patient keys
    patient_identifiers: AllOf[IdentifierMatch] = ()
    identifiers: AllOf[IdentifierMatch] = ()
    statuses: AllOf[OrderStatus] = ()
    offset: int = 0
    count: int = DEFAULT_COUNT


@dataclass(frozen=True, slots=True)
class StudyCriteria:
    keys: AllOf[str] = ()  # Study Instance UIDs
    patients: AllOf[str] = ()
    patient_identifiers: AllOf[IdentifierMatch] = ()
    identifiers: AllOf[IdentifierMatch] = ()
    orders: AllOf[str] = ()  # order keys
    study_dates: AllOf[DateRange] = ()
    offset: int = 0
    count: int = DEFAULT_COUNT


@dataclass(frozen=True, slots=True)
class ReportCriteria:
    keys: AllOf[str] = ()
    patients: AllOf[str] = ()
    patient_identifiers: AllOf[IdentifierMatch] = ()
    identifiers: AllOf[IdentifierMatch] = ()
    orders: AllOf[str] = ()
    statuses: AllOf[ReportStatus] = ()
    offset: int = 0
    count: int = DEFAULT_COUNT


Criteria: TypeAlias = PatientCriteria | OrderCriteria | StudyCriteria | ReportCriteria


def describe(criteria: Criteria) -> str:
    """The criteria as the audit trail records them.

    >>> describe(OrderCriteria(statuses=((OrderStatus.SCHEDULED, OrderStatus.ARRIVED),)))
    'statuses=scheduled,arrived; offset=0, count=50'
    """
    parts = []
    for field in fields(criteria):
        value = getattr(criteria, field.name)
        if field.name in ("offset", "count") or not value:
            continue
        groups = " & ".join(",".join(str(v) for v in group) or "(none)" for group in value)
        parts.append(f"{field.name}={groups}")
    return "; ".join([*parts, f"offset={criteria.offset}, count={criteria.count}"])


@dataclass(frozen=True, slots=True)
class RecordPage(Generic[T]):
    """One page of a search: the records from `offset`, and how many match in all."""

    items: tuple[T, ...]
    total: int
    offset: int
    count: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total and self.count > 0


# -- the records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientReference:
    """Who a record is about: the patient's key (their logical id) and primary identity."""

    key: int
    patient_id: str
    issuer: str
    name: str | None  # DICOM PN form


@dataclass(frozen=True, slots=True)
class KnownIdentifier:
    identifier: str
    issuer: str
    type_code: str | None  # HL7 table 0203: MR, PI, ...


@dataclass(frozen=True, slots=True)
class PatientRecord:
    key: int
    patient_id: str
    issuer: str
    identifiers: tuple[KnownIdentifier, ...]  # every one, the primary first
    name: str | None  # DICOM PN form
    birth_date: date | None
    sex: str | None
    multiple_birth: str | None  # Y / N
    birth_order: int | None
    is_temporary: bool
    merged_into: int | None  # the surviving record's key (HL7 A40)
    replaces: tuple[int, ...] = ()  # the keys of the records merged into this one


@dataclass(frozen=True, slots=True)
class ProcedureRecord:
    requested_procedure_id: str
    description: str | None
    code_value: str | None
    coding_scheme: str | None
    code_meaning: str | None
    study_instance_uid: str


@dataclass(frozen=True, slots=True)
class OrderRecord:
    key: int
    accession_number: str
    placer_order_number: str | None
    filler_order_number: str | None
    status: OrderStatus
    priority: Priority
    patient: PatientReference
    procedures: tuple[ProcedureRecord, ...]
    reason: str | None
    referring_physician: str | None  # DICOM PN form
    # When the hospital ordered it (or, without the hospital's time, when pedipacs got it).
    ordered_at: datetime


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    series_instance_uid: str
    series_number: int | None
    modality: str | None
    series_description: str | None
    body_part_examined: str | None
    series_date: date | None
    series_time: time | None
    number_of_instances: int
    instances: tuple[InstanceRecord, ...]


@dataclass(frozen=True, slots=True)
class StudyRecord:
    study_instance_uid: str
    accession_number: str | None
    patient: PatientReference
    order_key: int | None
    study_date: date | None  # local to the hospital, as DICOM keeps it
    study_time: time | None
    study_description: str | None
    referring_physician: str | None
    modalities: tuple[str, ...]
    number_of_series: int
    number_of_instances: int
    series: tuple[SeriesRecord, ...]


@dataclass(frozen=True, slots=True)
class ClinicalReport:
    """A released report (preliminary, final or amended) as of its newest released version:
    a draft written since a preliminary signature is not part of it."""

    key: int
    version: int
    status: ReportStatus
    accession_number: str
    filler_order_number: str | None
    order_key: int
    patient: PatientReference
    study_instance_uids: tuple[str, ...]
    procedure: str | None
    sections: tuple[tuple[str, str], ...]  # (title, text), the filled ones in template order
    impression: str | None
    addenda: tuple[Addendum, ...]
    critical_finding: str | None
    signed_by: str | None
    signed_by_name: str | None  # DICOM PN form
    released_at: datetime  # when this version was released
    study_date: date | None
