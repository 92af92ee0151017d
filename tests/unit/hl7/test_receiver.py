"""The HL7 door in-process on both databases: each message applied whole or not at all, once,
and answered with the acknowledgement its fate calls for."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from pedipacs.db.tables import AuditEvent, ImagingOrder, Patient, ScheduledStep
from pedipacs.errors import NotFound
from pedipacs.hl7.receiver import Hl7Receiver
from pedipacs.model.ris import OrderStatus, PatientIdentity
from pedipacs.node import Node
from support import hl7_samples as samples

BABY = PatientIdentity(samples.NEWBORN_ID, samples.FACILITY)


@pytest.fixture
def receiver(node: Node) -> Hl7Receiver:
    return Hl7Receiver(node.hl7_inbox, node.access, [samples.SENDER])


def count(node: Node, table: type) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def answer(receiver: Hl7Receiver, data: bytes) -> dict[str, list[str]]:
    return samples.ack_fields(receiver.receive(data, "10.0.0.7"))


def test_a_registration_and_an_order_are_applied(node: Node, receiver: Hl7Receiver) -> None:
    registered = answer(receiver, samples.adt())
    ordered = answer(receiver, samples.orm())

    assert registered["MSA"][1:3] == ["AA", "ADT0001"]
    assert ordered["MSA"][1:3] == ["AA", "ORM0001"]
    baby = node.patients.get(BABY)
    assert (baby.name, baby.mother, baby.birth_order) == (
        "LEFEVRE^BABY GIRL",
        PatientIdentity(samples.MOTHER_MRN, samples.FACILITY),
        2,
    )
    order = node.orders.get(samples.ACCESSION)
    assert order.status is OrderStatus.SCHEDULED
    assert order.study_instance_uids == (samples.STUDY_UID,)
    assert order.step_ids == ("SPS1",)


def test_an_order_is_changed_then_cancelled(node: Node, receiver: Hl7Receiver) -> None:
    answer(receiver, samples.orm())

    changed = answer(receiver, samples.orm("ORM0002", "XO", station="US_NICU_2"))
    cancelled = answer(receiver, samples.orm("ORM0003", "CA"))

    assert (changed["MSA"][1], cancelled["MSA"][1]) == ("AA", "AA")
    with node.database.reading() as session:
        assert session.scalars(select(ScheduledStep.station_ae_title)).all() == ["US_NICU_2"]
    assert node.orders.get(samples.ACCESSION).status is OrderStatus.CANCELLED


def test_an_omi_order_is_applied(node: Node, receiver: Hl7Receiver) -> None:
    assert answer(receiver, samples.omi())["MSA"][1] == "AA"
    assert node.orders.get(samples.OMI_ACCESSION).study_instance_uids == (samples.OMI_STUDY_UID,)


def test_a_duplicate_gets_the_same_answer_and_is_applied_once(
    node: Node, receiver: Hl7Receiver
) -> None:
    first = answer(receiver, samples.orm())
    again = answer(receiver, samples.orm())

    assert first["MSA"][1:3] == again["MSA"][1:3] == ["AA", "ORM0001"]
    assert first["MSH"][9] != again["MSH"][9]  # each ACK has its own control ID
    assert count(node, ImagingOrder) == 1
    # The same order under a new control ID is a second order: refused, the first kept.
    refused = answer(receiver, samples.orm("ORM0009"))
    assert refused["MSA"][1] == "AE"
    assert count(node, ImagingOrder) == 1


def test_a_failing_order_leaves_its_patient_registration_unapplied(
    node: Node, receiver: Hl7Receiver
) -> None:
    answer(receiver, samples.orm())
    renamed = samples.with_field(samples.orm("ORM0002"), "PID", 5, "LEFEVRE^LEA^^^^^L")

    refused = answer(receiver, renamed)  # NW for an accession number taken: AE

    assert refused["MSA"][1] == "AE"
    assert refused["ERR"][3].startswith("207^")
    assert node.patients.get(BABY).name == "LEFEVRE^BABY GIRL"


@pytest.mark.parametrize(
    ("data", "code", "err"),
    [
        (samples.with_field(samples.adt(), "PID", 3, ""), "AE", "101"),
        (samples.adt().replace(b"\rPV1|", b"\rP@1|"), "AE", "100"),
        (samples.adt().replace(b"MSH|^~\\&|", b"MSH|^~~&|"), "AE", "102"),
        (samples.without_segment(samples.orm(), "PID"), "AE", "100"),
        (samples.with_field(samples.orm(), "OBR", 4, ""), "AE", "101"),
        (samples.adt(event="A37"), "AR", "201"),
        (samples.with_field(samples.adt(), "MSH", 9, "ORU^R01"), "AR", "200"),
        (samples.with_field(samples.adt(), "MSH", 12, "3.0"), "AR", "203"),
        (samples.with_field(samples.adt(), "MSH", 10, ""), "AE", "101"),
        (b"PID|1||X\r", "AR", "100"),
        (b"", "AR", "100"),
    ],
    ids=["no-pid-3", "bad-segment", "bad-encoding", "orm-without-pid", "no-obr-4",
         "a37-unsupported", "oru-unsupported", "version-3", "no-control-id", "no-msh", "empty"],
)  # fmt: skip
def test_wrong_messages_are_refused_and_change_nothing(
    node: Node, receiver: Hl7Receiver, data: bytes, code: str, err: str
) -> None:
    ack = answer(receiver, data)

    assert ack["MSA"][1] == code
    assert ack["ERR"][3].split("^")[0] == err
    assert ack["ERR"][4] == "E"
    assert (count(node, Patient), count(node, ImagingOrder)) == (0, 0)


def test_an_unknown_sender_is_rejected_and_audited(node: Node, receiver: Hl7Receiver) -> None:
    ack = answer(receiver, samples.adt().replace(b"MSH|^~\\&|HIS|", b"MSH|^~\\&|LAB|"))

    assert ack["MSA"][1] == "AR"
    assert ack["ERR"][2] == "MSH^1^3"
    assert count(node, Patient) == 0
    with node.database.reading() as session:
        alerts = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.event_id == "110113")
        ).all()
    assert any("'LAB'" in (alert or "") for alert in alerts)
    with pytest.raises(NotFound):
        node.patients.get(BABY)


def test_any_sender_is_accepted_with_a_star(node: Node) -> None:
    receiver = Hl7Receiver(node.hl7_inbox, node.access, ["*"])

    ack = samples.ack_fields(receiver.receive(samples.adt().replace(b"|HIS|", b"|LAB|")))

    assert ack["MSA"][1] == "AA"


def test_the_hospital_reports_an_orders_status(node: Node, receiver: Hl7Receiver) -> None:
    answer(receiver, samples.orm())

    started = answer(receiver, samples.with_field(samples.orm("ORM0002", "SC"), "ORC", 5, "IP"))
    assert (started["MSA"][1], node.orders.get(samples.ACCESSION).status) == (
        "AA",
        OrderStatus.IN_PROGRESS,
    )
    done = answer(receiver, samples.with_field(samples.orm("ORM0003", "SC"), "ORC", 5, "CM"))

    assert done["MSA"][1] == "AA"
    assert node.orders.get(samples.ACCESSION).status is OrderStatus.COMPLETED
    with node.database.reading() as session:
        assert session.scalars(select(ScheduledStep.status)).all() == ["COMPLETED"]


@pytest.mark.parametrize(
    ("orc_5", "err"), [("HD", "103"), ("", "101")], ids=["on-hold", "no-status"]
)
def test_a_status_pedipacs_cannot_keep_is_refused_and_changes_nothing(
    node: Node, receiver: Hl7Receiver, orc_5: str, err: str
) -> None:
    answer(receiver, samples.orm())

    refused = answer(receiver, samples.with_field(samples.orm("ORM0002", "SC"), "ORC", 5, orc_5))

    assert (refused["MSA"][1], refused["ERR"][3].split("^")[0]) == ("AE", err)
    assert node.orders.get(samples.ACCESSION).status is OrderStatus.SCHEDULED


def test_a_status_for_a_cancelled_order_is_refused(node: Node, receiver: Hl7Receiver) -> None:
    answer(receiver, samples.orm())
    answer(receiver, samples.orm("ORM0002", "CA"))

    refused = answer(receiver, samples.with_field(samples.orm("ORM0003", "SC"), "ORC", 5, "CM"))

    assert refused["MSA"][1] == "AE"
    assert node.orders.get(samples.ACCESSION).status is OrderStatus.CANCELLED
