"""The RIS's plain values: patients as the hospital registers them, and orders with their
requested procedures and scheduled procedure steps. The HL7 door and the orders page build
these; the services in `ris/` apply them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum


class Priority(StrEnum):
    STAT = "STAT"
    ASAP = "ASAP"
    ROUTINE = "ROUTINE"


class OrderStatus(StrEnum):
    """Where an exam is: scheduled until images arrive, then in progress and completed as the
    modality reports (MPPS), reported once a report is signed."""

    SCHEDULED = "scheduled"
    ARRIVED = "arrived"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    DISCONTINUED = "discontinued"
    CANCELLED = "cancelled"
    REPORTED = "reported"


class StepStatus(StrEnum):
    """Scheduled Procedure Step Status values (PS3.3 C.4.10)."""

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    """One identifier of a patient, qualified by its issuer ('' when none was given)."""

    identifier: str
    issuer: str = ""
    type_code: str | None = None  # HL7 table 0203: MR, PI, PN, ...

    def __str__(self) -> str:
        return f"{self.identifier}^^^{self.issuer}" if self.issuer else self.identifier


@dataclass(frozen=True, slots=True)
class PatientRegistration:
    """A patient as the hospital registers or updates them (HL7 PID, the orders page).

    The first identifier is the primary one: the Patient ID the images and the worklist carry.
    Names are in DICOM PN form (`FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`).
    """

    identifiers: tuple[PatientIdentity, ...]
    name: str | None = None
    birth_date: date | None = None
    birth_time: time | None = None
    sex: str | None = None  # M, F, O
    mother: PatientIdentity | None = None  # PID-21
    multiple_birth: str | None = None  # PID-24: Y / N
    birth_order: int | None = None  # PID-25
    is_temporary: bool = False  # a newborn's identity before the permanent one is known

    @property
    def primary(self) -> PatientIdentity:
        return self.identifiers[0]


@dataclass(frozen=True, slots=True)
class ScheduledStepRequest:
    """One scheduled procedure step: where and when a modality performs (part of) a procedure."""

    step_id: str
    modality: str | None = None
    station_ae_title: str | None = None
    station_name: str | None = None
    start: datetime | None = None  # local time of the hospital, as HL7 and DICOM carry it
    description: str | None = None
    performing_physician: str | None = None


@dataclass(frozen=True, slots=True)
class ProcedureRequest:
    """A requested procedure (OBR-4); its Study Instance UID is made up when not given."""

    requested_procedure_id: str
    description: str | None = None
    code_value: str | None = None
    coding_scheme: str | None = None
    code_meaning: str | None = None
    study_instance_uid: str | None = None
    steps: tuple[ScheduledStepRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new or changed imaging order, identified by its accession number."""

    patient: PatientIdentity
    accession_number: str
    priority: Priority = Priority.ROUTINE
    placer_order_number: str | None = None
    filler_order_number: str | None = None
    reason: str | None = None
    referring_physician: str | None = None
    ordering_department: str | None = None
    patient_class: str | None = None  # E emergency, I inpatient, O outpatient, ...
    patient_location: str | None = None  # point of care (PV1-3.1): ED, NICU, PICU, a ward
    patient_weight: str | None = None  # kg
    ordered_at: datetime | None = None
    procedures: tuple[ProcedureRequest, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """An order as it stands, for answers and pages."""

    accession_number: str
    patient: PatientIdentity
    status: OrderStatus
    priority: Priority
    placer_order_number: str | None
    study_instance_uids: tuple[str, ...]
    step_ids: tuple[str, ...]
