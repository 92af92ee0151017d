"""The MPPS state machine (PS3.4 F.7) on both databases: a step created IN PROGRESS starts its
scheduled step and order, an N-SET ends it COMPLETED or DISCONTINUED and the order follows;
an ended step may no longer be updated; a refused request leaves nothing behind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID
from sqlalchemy import func, select

from pedipacs.db.tables import AuditEvent, PerformedStep, ScheduledStep
from pedipacs.model.origin import Origin
from pedipacs.model.ris import OrderStatus, OrderSummary
from pedipacs.node import Node
from pedipacs.ris.performed import (
    InvalidSopInstanceUidError,
    PerformedStepEndedError,
    PerformedStepExistsError,
    UnknownPerformedStepError,
)
from pedipacs.ris.performed_attributes import (
    InvalidAttributeValueError,
    PerformedProcedureStepStatus,
    RequiredAttributeMissingError,
    RequiredValueMissingError,
)
from support.mpps import as_json, ended, in_progress
from support.worklist import HIS, ORDERS, schedule

MODALITY = Origin.dimse("US_ED_1", "PEDIPACS", "127.0.0.1")
MPPS_UID = "2.25.900001"
PROCEDURE_RECORD = "110111"


@pytest.fixture
def orders(node: Node) -> dict[str, OrderSummary]:
    """The small paediatric worklist of support.worklist (A1005 cancelled)."""
    return schedule(node.patients, node.orders)


def us_abdomen(**changes: Any) -> Dataset:
    """The N-CREATE for A1001's one step, S1001, as picked from the worklist."""
    fields = dict(
        study_instance_uid="2.25.1001",
        accession_number="A1001",
        requested_procedure_id="RP1001",
        step_id="S1001",
    )
    return in_progress(**{**fields, **changes})


def step_status(node: Node, step_id: str) -> str:
    with node.database.reading() as session:
        status = session.scalar(
            select(ScheduledStep.status).where(ScheduledStep.step_id == step_id)
        )
    assert status is not None
    return status


def order_status(node: Node, accession_number: str) -> OrderStatus:
    return node.orders.get(accession_number).status


def count(node: Node, table: type, *where: Any) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def actions(node: Node) -> list[str]:
    with node.database.reading() as session:
        return list(
            session.scalars(
                select(AuditEvent.event_action)
                .where(AuditEvent.event_id == PROCEDURE_RECORD)
                .order_by(AuditEvent.sequence)
            )
        )


def test_a_step_started_from_the_worklist_starts_its_step_and_order_and_is_audited(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    created = node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)

    assert created.status is PerformedProcedureStepStatus.IN_PROGRESS
    assert (created.accession_numbers, created.step_ids) == (("A1001",), ("S1001",))
    assert (created.study_instance_uid, created.modality) == ("2.25.1001", "US")
    assert step_status(node, "S1001") == "STARTED"
    assert order_status(node, "A1001") is OrderStatus.IN_PROGRESS
    with node.database.reading() as session:
        row = session.scalar(select(PerformedStep))
        assert row is not None
        assert row.calling_ae_title == "US_ED_1"
        assert row.order_fk is not None and row.scheduled_step_fk is not None
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.event_id == PROCEDURE_RECORD)
        ).one()
    assert (audit.event_action, audit.patient_id, audit.study_instance_uid) == (
        "C", "MRN2001", "2.25.1001",
    )  # fmt: skip
    assert "order A1001 in-progress" in (audit.detail or "")


def test_completed_completes_the_step_and_order_and_keeps_every_attribute(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)

    done = node.performed_steps.update(MPPS_UID, as_json(ended("COMPLETED")), MODALITY)

    assert done.status is PerformedProcedureStepStatus.COMPLETED
    assert step_status(node, "S1001") == "COMPLETED"
    assert order_status(node, "A1001") is OrderStatus.COMPLETED
    kept = Dataset.from_json(node.performed_steps.attributes(MPPS_UID))
    assert kept.PerformedProcedureStepStatus == "COMPLETED"
    assert (kept.PerformedProcedureStepStartTime, kept.PerformedProcedureStepEndTime) == (
        "093512", "094210",
    )  # fmt: skip
    assert kept.ScheduledStepAttributesSequence[0].ScheduledProcedureStepID == "S1001"
    assert len(kept.PerformedSeriesSequence[0].ReferencedImageSequence) == 2
    assert "SpecificCharacterSet" not in kept  # the JSON is Unicode whatever the request used
    assert actions(node) == ["C", "U"]


@pytest.mark.parametrize("final", ["COMPLETED", "DISCONTINUED"])
def test_an_ended_step_may_no_longer_be_updated(
    node: Node, orders: dict[str, OrderSummary], final: str
) -> None:
    node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)
    node.performed_steps.update(MPPS_UID, as_json(ended(final)), MODALITY)
    before = node.performed_steps.attributes(MPPS_UID)

    with pytest.raises(PerformedStepEndedError, match="may no longer be updated"):
        node.performed_steps.update(MPPS_UID, as_json(ended("IN PROGRESS")), MODALITY)
    with pytest.raises(PerformedStepEndedError):
        node.performed_steps.update(MPPS_UID, as_json(ended("COMPLETED", series=3)), MODALITY)

    assert node.performed_steps.attributes(MPPS_UID) == before
    assert node.performed_steps.get(MPPS_UID).status == final
    assert actions(node) == ["C", "U"]


def test_a_second_create_with_the_same_uid_is_refused_and_changes_nothing(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)
    other_order = in_progress(study_instance_uid="2.25.1002", accession_number="A1002")

    with pytest.raises(PerformedStepExistsError):
        node.performed_steps.create(MPPS_UID, as_json(other_order), MODALITY)

    assert count(node, PerformedStep) == 1
    assert order_status(node, "A1002") is OrderStatus.SCHEDULED


def test_without_a_uid_from_the_modality_pedipacs_chooses_one(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    created = node.performed_steps.create(None, as_json(us_abdomen()), MODALITY)

    assert UID(created.sop_instance_uid).is_valid
    assert node.performed_steps.get(created.sop_instance_uid).accession_numbers == ("A1001",)


@pytest.mark.parametrize(
    ("change", "error", "keyword"),
    [
        (("PerformedProcedureStepStatus", "COMPLETED"), InvalidAttributeValueError,
         "PerformedProcedureStepStatus"),
        (("PerformedProcedureStepStatus", None), RequiredAttributeMissingError,
         "PerformedProcedureStepStatus"),
        (("PerformedProcedureStepStartDate", None), RequiredAttributeMissingError,
         "PerformedProcedureStepStartDate"),
        (("Modality", ""), RequiredValueMissingError, "Modality"),
        (("ScheduledStepAttributesSequence", []), RequiredValueMissingError,
         "ScheduledStepAttributesSequence"),
        (("PerformedProcedureStepStartDate", "25.11.2026"), InvalidAttributeValueError,
         "PerformedProcedureStepStartDate"),
    ],
    ids=["completed_at_create", "no_status", "no_start_date", "empty_modality",
         "no_scheduled_step_item", "malformed_start_date"],
)  # fmt: skip
def test_a_create_breaking_table_f72_1_is_refused_naming_the_attribute_and_stores_nothing(
    node: Node,
    orders: dict[str, OrderSummary],
    change: tuple[str, Any],
    error: type[Exception],
    keyword: str,
) -> None:
    request = us_abdomen()
    name, value = change
    if value is None:
        delattr(request, name)
    else:
        setattr(request, name, value)

    with pytest.raises(error) as raised:
        node.performed_steps.create(MPPS_UID, as_json(request), MODALITY)

    assert getattr(raised.value, "keyword", None) == keyword
    assert count(node, PerformedStep) == 0
    assert step_status(node, "S1001") == "SCHEDULED"
    assert order_status(node, "A1001") is OrderStatus.SCHEDULED
    assert actions(node) == []


def test_a_malformed_sop_instance_uid_is_refused(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    with pytest.raises(InvalidSopInstanceUidError):
        node.performed_steps.create("1.2.x", as_json(us_abdomen()), MODALITY)


def test_an_update_of_an_unknown_step_is_refused(node: Node) -> None:
    with pytest.raises(UnknownPerformedStepError):
        node.performed_steps.update("2.25.404", as_json(ended()), MODALITY)


def test_an_unscheduled_step_is_kept_without_an_order(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    walk_in = in_progress(study_instance_uid="2.25.777", patient_id="WALKIN1")

    created = node.performed_steps.create(MPPS_UID, as_json(walk_in), MODALITY)
    done = node.performed_steps.update(MPPS_UID, as_json(ended()), MODALITY)

    assert (created.accession_numbers, done.status) == ((), "COMPLETED")
    with node.database.reading() as session:
        row = session.scalar(select(PerformedStep))
        assert row is not None
        assert (row.order_fk, row.scheduled_step_fk, row.study_instance_uid) == (
            None, None, "2.25.777",
        )  # fmt: skip
        details = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.event_id == PROCEDURE_RECORD)).all()  # fmt: skip
    assert all("unscheduled" in (detail or "") for detail in details)


def test_an_accession_number_typed_at_the_modality_finds_the_order(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    # The modality made up its own Study Instance UID; the technologist typed the accession.
    typed = in_progress(study_instance_uid="2.25.5555", accession_number="A1002", modality="CT")

    created = node.performed_steps.create(MPPS_UID, as_json(typed), MODALITY)

    assert created.step_ids == ("S1002",)
    assert order_status(node, "A1002") is OrderStatus.IN_PROGRESS


def test_an_order_with_two_steps_completes_when_both_are_done(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    wrist = dict(study_instance_uid="2.25.1006", accession_number="A1006",
                 requested_procedure_id="RP1006")  # fmt: skip
    node.performed_steps.create(
        "2.25.61", as_json(in_progress(**wrist, step_id="S1006A")), MODALITY
    )
    node.performed_steps.update("2.25.61", as_json(ended()), MODALITY)

    # The ultrasound is done; the radiograph is still to be taken and stays on the worklist.
    assert (step_status(node, "S1006A"), step_status(node, "S1006B")) == ("COMPLETED", "SCHEDULED")
    assert order_status(node, "A1006") is OrderStatus.IN_PROGRESS

    radiograph = in_progress(**wrist, step_id="S1006B", modality="DX", station="DX_WARD")
    node.performed_steps.create("2.25.62", as_json(radiograph), MODALITY)
    node.performed_steps.update("2.25.62", as_json(ended("DISCONTINUED")), MODALITY)

    # Nothing left to perform and one step was done: the order is completed (partly).
    assert step_status(node, "S1006B") == "DISCONTINUED"
    assert order_status(node, "A1006") is OrderStatus.COMPLETED


def test_a_discontinued_step_discontinues_its_order_until_the_modality_starts_again(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    node.performed_steps.create("2.25.71", as_json(us_abdomen()), MODALITY)
    node.performed_steps.update("2.25.71", as_json(ended("DISCONTINUED", series=1)), MODALITY)

    assert step_status(node, "S1001") == "DISCONTINUED"
    assert order_status(node, "A1001") is OrderStatus.DISCONTINUED

    node.performed_steps.create("2.25.72", as_json(us_abdomen()), MODALITY)  # a new attempt

    assert step_status(node, "S1001") == "STARTED"
    assert order_status(node, "A1001") is OrderStatus.IN_PROGRESS


def test_a_cancelled_order_is_not_reopened_by_a_modality(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    cancelled = in_progress(study_instance_uid="2.25.1005", accession_number="A1005",
                            step_id="S1005")  # fmt: skip

    created = node.performed_steps.create(MPPS_UID, as_json(cancelled), MODALITY)
    node.performed_steps.update(MPPS_UID, as_json(ended()), MODALITY)

    assert created.accession_numbers == ("A1005",)  # linked, for a person to sort out
    assert step_status(node, "S1005") == "CANCELLED"
    assert order_status(node, "A1005") is OrderStatus.CANCELLED


def test_an_n_set_replaces_sequences_whole_and_may_not_change_what_the_create_fixed(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)
    progress = ended("IN PROGRESS", series=2)
    progress.Modality = "US"  # sent again unchanged: accepted
    progress.IssuerOfPatientID = ""  # absent at the create, empty now: the same
    node.performed_steps.update(MPPS_UID, as_json(progress), MODALITY)
    node.performed_steps.update(MPPS_UID, as_json(ended("IN PROGRESS", series=1)), MODALITY)

    kept = Dataset.from_json(node.performed_steps.attributes(MPPS_UID))
    assert len(kept.PerformedSeriesSequence) == 1
    assert kept.PerformedProcedureStepStatus == "IN PROGRESS"
    assert order_status(node, "A1001") is OrderStatus.IN_PROGRESS

    relinked = Dataset()
    relinked.Modality = "CT"
    with pytest.raises(InvalidAttributeValueError, match="Modality") as raised:
        node.performed_steps.update(MPPS_UID, as_json(relinked), MODALITY)
    assert raised.value.keyword == "Modality"


@pytest.mark.parametrize(
    ("modification", "error"),
    [
        (ended("DONE"), InvalidAttributeValueError),
        (ended("COMPLETED", series=0), RequiredValueMissingError),
    ],
    ids=["unknown_status", "completed_without_series"],
)
def test_a_refused_n_set_leaves_the_step_in_progress(
    node: Node, orders: dict[str, OrderSummary], modification: Dataset, error: type[Exception]
) -> None:
    node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)
    before = node.performed_steps.attributes(MPPS_UID)

    with pytest.raises(error):
        node.performed_steps.update(MPPS_UID, as_json(modification), MODALITY)

    assert node.performed_steps.attributes(MPPS_UID) == before
    assert step_status(node, "S1001") == "STARTED"
    assert order_status(node, "A1001") is OrderStatus.IN_PROGRESS
    assert actions(node) == ["C"]


def test_an_order_changed_while_its_step_is_performed_keeps_the_step_started_and_linked(
    node: Node, orders: dict[str, OrderSummary]
) -> None:
    node.performed_steps.create(MPPS_UID, as_json(us_abdomen()), MODALITY)
    [request] = [order for order in ORDERS if order.accession_number == "A1001"]

    node.orders.change(replace(request, reason="Suspected intussusception, vomiting"), HIS)

    assert step_status(node, "S1001") == "STARTED"
    with node.database.reading() as session:
        linked = session.scalar(
            select(ScheduledStep.step_id)
            .join(PerformedStep, PerformedStep.scheduled_step_fk == ScheduledStep.id)
            .where(PerformedStep.sop_instance_uid == MPPS_UID)
        )
    assert linked == "S1001"
    node.performed_steps.update(MPPS_UID, as_json(ended("COMPLETED")), MODALITY)
    assert order_status(node, "A1001") is OrderStatus.COMPLETED
