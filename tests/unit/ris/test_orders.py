"""Patients and orders on both databases: registration by any identifier, orders with their
procedures and worklist steps, changes and cancellation, at-most-once HL7 application."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pedipacs.db.tables import AuditEvent, ImagingOrder, Patient, ScheduledStep
from pedipacs.errors import InvalidInput, StorageUnavailable
from pedipacs.model.origin import Origin
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    PatientIdentity,
    PatientRegistration,
    Priority,
    ProcedureRequest,
)
from pedipacs.node import Node
from pedipacs.ris.inbox import AckCode, MessageKey
from pedipacs.ris.orders import OrderClosedError, OrderExistsError, place_order
from pedipacs.ris.patients import UnknownPatientError, register_patient
from support.worklist import us_abdomen

HIS = Origin.cli("his")
MRN = PatientIdentity("MRN1001", "CHILDRENS", "MR")
NEWBORN = PatientRegistration(
    identifiers=(MRN, PatientIdentity("T-77", "CHILDRENS", "PI")),
    name="LEFEVRE^BABY GIRL",
    birth_date=date(2026, 11, 24),
    sex="F",
    mother=PatientIdentity("MRN500", "CHILDRENS"),
    multiple_birth="Y",
    birth_order=2,
    is_temporary=True,
)


def ultrasound(accession: str = "ACC1", study_uid: str | None = None) -> OrderRequest:
    return replace(
        us_abdomen(MRN, accession, study_uid),
        priority=Priority.STAT,
        placer_order_number="PL-9",
        reason="Suspected appendicitis",
        referring_physician="OKAFOR^ADA",
        patient_class="E",
        patient_weight="18.5",
    )


def count(node: Node, table: type) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_a_patient_is_registered_once_and_found_by_any_identifier(node: Node) -> None:
    node.patients.register(NEWBORN, HIS)
    node.patients.register(
        PatientRegistration(
            identifiers=(PatientIdentity("T-77", "CHILDRENS"),), name="LEFEVRE^LEA"
        ),
        HIS,
    )  # an A08 naming the baby by her temporary number

    registered = node.patients.get(MRN)
    assert registered.name == "LEFEVRE^LEA"
    assert [str(i) for i in registered.identifiers] == ["MRN1001^^^CHILDRENS", "T-77^^^CHILDRENS"]
    assert count(node, Patient) == 1
    with node.database.reading() as session:
        events = session.scalars(
            select(AuditEvent.event_action).where(AuditEvent.event_id == "110110")
        ).all()
    assert events == ["C", "U"]


def test_newborn_linkage_is_kept(node: Node) -> None:
    node.patients.register(NEWBORN, HIS)

    baby = node.patients.get(PatientIdentity("T-77", "CHILDRENS"))

    assert baby.mother == PatientIdentity("MRN500", "CHILDRENS")
    assert (baby.multiple_birth, baby.birth_order, baby.is_temporary) == ("Y", 2, True)


def test_an_order_schedules_its_steps_with_a_study_instance_uid(node: Node) -> None:
    node.patients.register(NEWBORN, HIS)

    placed = node.orders.place(ultrasound(), HIS)

    assert placed.status is OrderStatus.SCHEDULED
    assert placed.priority is Priority.STAT
    assert placed.step_ids == ("SPS1",)
    [study_uid] = placed.study_instance_uids
    assert study_uid.count(".") > 3
    with node.database.reading() as session:
        step = session.scalar(select(ScheduledStep))
        assert step is not None
        assert (step.station_ae_title, step.modality, step.start_date) == (
            "US_ED_1",
            "US",
            date(2026, 11, 25),
        )


def test_wrong_orders_are_refused_and_leave_nothing(node: Node) -> None:
    node.patients.register(NEWBORN, HIS)
    unknown_patient = OrderRequest(
        patient=PatientIdentity("NOBODY"), accession_number="ACC2",
        procedures=ultrasound().procedures,
    )  # fmt: skip
    no_steps = OrderRequest(
        patient=MRN, accession_number="ACC3",
        procedures=(ProcedureRequest(requested_procedure_id="RP1"),),
    )  # fmt: skip

    with pytest.raises(UnknownPatientError):
        node.orders.place(unknown_patient, HIS)
    with pytest.raises(InvalidInput, match="no scheduled step"):
        node.orders.place(no_steps, HIS)
    with pytest.raises(InvalidInput, match="accession number"):
        node.orders.place(ultrasound(accession="X" * 17), HIS)
    with pytest.raises(InvalidInput, match="not a valid UID"):
        node.orders.place(ultrasound(study_uid="1.2.abc"), HIS)
    node.orders.place(ultrasound(), HIS)
    with pytest.raises(OrderExistsError):
        node.orders.place(ultrasound(), HIS)

    assert count(node, ImagingOrder) == 1
    assert count(node, ScheduledStep) == 1


def test_a_changed_order_is_rescheduled_and_a_cancelled_one_is_closed(node: Node) -> None:
    node.patients.register(NEWBORN, HIS)
    node.orders.place(ultrasound(), HIS)
    moved = replace(ultrasound(), priority=Priority.ROUTINE)

    changed = node.orders.change(moved, HIS)
    cancelled = node.orders.cancel("ACC1", HIS, reason="duplicate request")

    assert changed.priority is Priority.ROUTINE
    assert cancelled.status is OrderStatus.CANCELLED
    with node.database.reading() as session:
        assert session.scalars(select(ScheduledStep.status)).all() == ["CANCELLED"]
    with pytest.raises(OrderClosedError):
        node.orders.change(moved, HIS)


def test_a_message_is_applied_once_and_answered_the_same_way_again(node: Node) -> None:
    key = MessageKey("HIS", "CHILDRENS", "MSG-1")
    applied: list[int] = []

    def register_and_order(session: Session) -> str:
        applied.append(1)
        register_patient(session, NEWBORN, HIS)
        place_order(session, ultrasound(), HIS)
        return "order ACC1 placed"

    first = node.hl7_inbox.receive(key, "ORM^O01", register_and_order)
    again = node.hl7_inbox.receive(key, "ORM^O01", register_and_order)

    assert (first.code, first.duplicate) == (AckCode.ACCEPTED, False)
    assert (again.code, again.duplicate, again.detail) == (AckCode.ACCEPTED, True, first.detail)
    assert applied == [1]
    assert count(node, ImagingOrder) == 1


def test_a_wrong_message_changes_nothing_and_a_failing_store_asks_for_a_resend(
    node: Node,
) -> None:
    def half_then_wrong(session: Session) -> str:
        register_patient(session, NEWBORN, HIS)
        raise InvalidInput("OBR-4: no procedure code")

    def storage_down(session: Session) -> str:
        raise StorageUnavailable("disk full")

    wrong = node.hl7_inbox.receive(MessageKey("HIS", "", "M2"), "ORM^O01", half_then_wrong)
    later = node.hl7_inbox.receive(MessageKey("HIS", "", "M3"), "ORM^O01", storage_down)
    empty = node.hl7_inbox.receive(MessageKey("HIS", "", ""), "ADT^A04", storage_down)

    assert (wrong.code, wrong.detail) == (AckCode.ERROR, "OBR-4: no procedure code")
    assert later.code is AckCode.REJECTED
    assert empty.code is AckCode.ERROR
    assert count(node, Patient) == 0  # the registration before the error was rolled back
    # A rejected message is not remembered: sent again, it is applied.
    retried = node.hl7_inbox.receive(
        MessageKey("HIS", "", "M3"), "ADT^A04",
        lambda session: f"registered {register_patient(session, NEWBORN, HIS).patient_id}",
    )  # fmt: skip
    assert retried.code is AckCode.ACCEPTED
    assert count(node, Patient) == 1


def test_a_registration_without_demographics_keeps_those_known(node: Node) -> None:
    node.patients.register(NEWBORN, HIS)

    node.patients.register(PatientRegistration(identifiers=(MRN,)), HIS)  # an ORM's bare PID

    kept = node.patients.get(MRN)
    assert (kept.name, kept.birth_date, kept.sex) == ("LEFEVRE^BABY GIRL", date(2026, 11, 24), "F")
    assert kept.mother == PatientIdentity("MRN500", "CHILDRENS")
    assert kept.is_temporary  # until merged into a permanent identity
