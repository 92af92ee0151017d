"""The RIS side: a patient's other identifiers, orders, their requested procedures and
scheduled procedure steps (what the Modality Worklist answers from), and the HL7 messages
received (so that a re-sent message is not applied twice)."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pedipacs.db.base import Base, BigId, primary_id, uid, utc_datetime, utc_now
from pedipacs.db.tables.columns import search_string


class PatientIdentifier(Base):
    """Every identifier a patient is known by (PID-3 repetitions), the primary one included,
    each qualified by its issuer ('' when none was given)."""

    __tablename__ = "patient_identifier"
    __table_args__ = (
        UniqueConstraint("identifier", "issuer"),
        Index("ix_patient_identifier_patient_fk", "patient_fk"),
    )

    id: Mapped[primary_id]
    patient_fk: Mapped[int] = mapped_column(BigId, ForeignKey("patient.id"))
    identifier: Mapped[str] = mapped_column(search_string(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")
    type_code: Mapped[str | None] = mapped_column(String(16))  # HL7 table 0203: MR, PI, ...


class ImagingOrder(Base):
    """An order for imaging (HL7 ORC/OBR, or the orders page), identified by its accession
    number; its status follows the exam (scheduled, arrived, in progress, completed, ...)."""

    __tablename__ = "imaging_order"
    __table_args__ = (
        UniqueConstraint("accession_number"),
        Index("ix_imaging_order_patient_fk", "patient_fk"),
        Index("ix_imaging_order_placer_order_number", "placer_order_number"),
        Index("ix_imaging_order_status", "status"),
        Index("ix_imaging_order_images_arrived_at", "images_arrived_at"),
    )

    id: Mapped[primary_id]
    patient_fk: Mapped[int] = mapped_column(BigId, ForeignKey("patient.id"))
    accession_number: Mapped[str] = mapped_column(search_string(16))
    placer_order_number: Mapped[str | None] = mapped_column(String(64))
    filler_order_number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(8))  # STAT, ASAP, ROUTINE
    reason: Mapped[str | None] = mapped_column(Text)
    referring_physician_name: Mapped[str | None] = mapped_column(String(324))
    referring_physician_name_search: Mapped[str | None] = mapped_column(search_string(324))
    ordering_department: Mapped[str | None] = mapped_column(String(64))
    patient_class: Mapped[str | None] = mapped_column(String(8))  # PV1-2: E, I, O, ...
    # PV1-3.1, the point of care (ward or unit: ED, NICU, PICU, ...), upper case.
    patient_location: Mapped[str | None] = mapped_column(String(64))
    patient_weight: Mapped[str | None] = mapped_column(String(16))  # kg, DS text
    ordered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the first image of the exam arrived (reconciled with the order): turnaround times
    # and the reading worklist's waiting time count from it.
    images_arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[utc_datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class RequestedProcedure(Base):
    """What was ordered (OBR-4), with the Study Instance UID the modality must use."""

    __tablename__ = "requested_procedure"
    __table_args__ = (
        Index("ix_requested_procedure_study_instance_uid", "study_instance_uid", unique=True),
        Index("ix_requested_procedure_order_fk", "order_fk"),
    )

    id: Mapped[primary_id]
    order_fk: Mapped[int] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    requested_procedure_id: Mapped[str] = mapped_column(search_string(16))
    description: Mapped[str | None] = mapped_column(String(64))
    code_value: Mapped[str | None] = mapped_column(String(16))
    coding_scheme: Mapped[str | None] = mapped_column(String(16))
    code_meaning: Mapped[str | None] = mapped_column(String(64))
    study_instance_uid: Mapped[uid]


class ScheduledStep(Base):
    """A scheduled procedure step: one item of a modality's worklist."""

    __tablename__ = "scheduled_step"
    __table_args__ = (
        Index("ix_scheduled_step_procedure_fk", "procedure_fk"),
        Index("ix_scheduled_step_station_ae_title", "station_ae_title"),
        Index("ix_scheduled_step_start_date", "start_date"),
        Index("ix_scheduled_step_status", "status"),
    )

    id: Mapped[primary_id]
    procedure_fk: Mapped[int] = mapped_column(BigId, ForeignKey("requested_procedure.id"))
    step_id: Mapped[str] = mapped_column(search_string(16))
    station_ae_title: Mapped[str | None] = mapped_column(search_string(16))
    station_name: Mapped[str | None] = mapped_column(String(16))
    modality: Mapped[str | None] = mapped_column(search_string(16))
    start_date: Mapped[date | None] = mapped_column(Date)
    start_time: Mapped[time | None] = mapped_column(Time)
    description: Mapped[str | None] = mapped_column(String(64))
    performing_physician_name: Mapped[str | None] = mapped_column(String(324))
    status: Mapped[str] = mapped_column(String(16))  # SCHEDULED, STARTED, COMPLETED, ...


class Hl7MessageRecord(Base):
    """An HL7 message received, by its sender and control ID (MSH-3, MSH-4, MSH-10), with the
    acknowledgement it got: a re-sent message gets the same answer and is not applied again."""

    __tablename__ = "hl7_message"
    __table_args__ = (
        UniqueConstraint("sending_application", "sending_facility", "control_id"),
        Index("ix_hl7_message_received_at", "received_at"),
    )

    id: Mapped[primary_id]
    sending_application: Mapped[str] = mapped_column(String(227), default="")
    sending_facility: Mapped[str] = mapped_column(String(227), default="")
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(16))  # ADT^A04, ORM^O01, ...
    received_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    ack_code: Mapped[str] = mapped_column(String(2))  # AA, AE, AR
    detail: Mapped[str | None] = mapped_column(Text)


class PerformedStep(Base):
    """A Modality Performed Procedure Step (MPPS N-CREATE / N-SET): what the modality reports
    it did, linked to the scheduled step and order it names when pedipacs knows them."""

    __tablename__ = "performed_step"
    __table_args__ = (
        UniqueConstraint("sop_instance_uid"),
        Index("ix_performed_step_order_fk", "order_fk"),
    )

    id: Mapped[primary_id]
    sop_instance_uid: Mapped[uid]  # the MPPS instance the modality created
    status: Mapped[str] = mapped_column(String(16))  # IN PROGRESS, COMPLETED, DISCONTINUED
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    order_fk: Mapped[int | None] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    scheduled_step_fk: Mapped[int | None] = mapped_column(BigId, ForeignKey("scheduled_step.id"))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    # Every attribute received so far, as DICOM JSON: N-SET merges into it, N-GET answers it.
    attributes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[utc_datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class CommitmentRequest(Base):
    """A Storage Commitment request (N-ACTION) waiting for its N-EVENT-REPORT: a durable job,
    sent by a background worker with retries, that survives a restart."""

    __tablename__ = "commitment_request"
    __table_args__ = (Index("ix_commitment_request_state_due_at", "state", "due_at"),)

    id: Mapped[primary_id]
    transaction_uid: Mapped[uid]
    requester_ae_title: Mapped[str] = mapped_column(String(16))
    # [[SOP Class UID, SOP Instance UID], ...] as JSON, in the order requested.
    references: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending, reported, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImageException(Base):
    """A study whose images match no order, or disagree with their order (another patient):
    kept out of the order until someone resolves it on the exceptions page."""

    __tablename__ = "image_exception"
    __table_args__ = (
        UniqueConstraint("study_fk"),
        Index("ix_image_exception_state", "state"),
    )

    id: Mapped[primary_id]
    study_fk: Mapped[int] = mapped_column(BigId, ForeignKey("study.id"))
    reason: Mapped[str] = mapped_column(String(32))  # no-order, patient-differs, order-cancelled
    order_fk: Mapped[int | None] = mapped_column(BigId, ForeignKey("imaging_order.id"))
    detail: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # open, attached, dismissed
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[utc_datetime] = mapped_column(default=utc_now)
