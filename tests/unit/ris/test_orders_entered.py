"""The part of `ris.orders` the orders page and `/api/orders` use, on both databases: an order
placed with its patient's registration (both or neither), made-up accession numbers and IDs,
a change that keeps the Study Instance UIDs, and the audited listing and details."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import func, select

from pedipacs.db.tables import AuditEvent, ImagingOrder, Patient
from pedipacs.errors import InvalidInput
from pedipacs.model.origin import Origin
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    PatientIdentity,
    PatientRegistration,
    ProcedureRequest,
    ScheduledStepRequest,
    StepStatus,
)
from pedipacs.node import Node
from pedipacs.ris.order_views import OrderSearch
from pedipacs.ris.orders import OPEN, OrderExistsError
from support.worklist import schedule

DESK = Origin.http("technologist", "10.1.2.3")
CHILD = PatientRegistration(
    identifiers=(PatientIdentity("MRN7001", "CHILDRENS"),), name="DUBOIS^ELSA", sex="F"
)


def accessions(node: Node, **criteria: object) -> list[str]:
    page = node.orders.search(OrderSearch(**criteria), DESK)  # type: ignore[arg-type]
    return [item.accession_number for item in page.items]


def count(node: Node, table: type) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def unnamed_order(procedures: int = 1) -> OrderRequest:
    """An order leaving the accession number and the IDs to the RIS."""
    return OrderRequest(
        patient=CHILD.primary,
        accession_number="",
        procedures=tuple(
            ProcedureRequest("", description=f"XR {n}", steps=(ScheduledStepRequest("", "DX"),))
            for n in range(procedures)
        ),
    )


@pytest.fixture
def scheduled(node: Node) -> Node:
    schedule(node.patients, node.orders)
    return node


def test_orders_are_listed_soonest_first_then_by_priority(scheduled: Node) -> None:
    assert accessions(scheduled, statuses=OPEN) == ["A1001", "A1002", "A1003", "A1006", "A1004"]
    assert accessions(scheduled) == ["A1001", "A1002", "A1005", "A1003", "A1006", "A1004"]
    assert accessions(scheduled, statuses=frozenset({OrderStatus.CANCELLED})) == ["A1005"]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"scheduled_on": date(2026, 11, 26)}, ["A1003", "A1006"]),
        ({"modality": "dx"}, ["A1006", "A1004"]),
        ({"patient": "okoro"}, ["A1002"]),
        ({"patient": "lena"}, ["A1006", "A1004"]),  # a given name
        ({"patient": "mül"}, ["A1006", "A1004"]),
        ({"patient": "MRN2001"}, ["A1001", "A1005"]),
        ({"patient": "T-2003"}, ["A1003"]),
        ({"patient": "%"}, []),  # not a wildcard
        ({"patient": "okoro", "modality": "US"}, []),
    ],
    ids=["day", "modality", "family_name", "given_name", "non_ascii", "patient_id",
         "newborn_id", "percent", "two_criteria"],
)  # fmt: skip
def test_each_criterion_narrows_the_list(
    scheduled: Node, criteria: dict[str, object], expected: list[str]
) -> None:
    assert accessions(scheduled, **criteria) == expected


def test_the_list_pages_and_keeps_to_the_patients_in_scope(scheduled: Node) -> None:
    first = scheduled.orders.search(OrderSearch(limit=2), DESK)
    last = scheduled.orders.search(OrderSearch(limit=2, offset=4), DESK)
    clinician = replace(DESK, patient_scope=frozenset({"MRN2002"}))

    assert ([i.accession_number for i in first.items], first.has_more) == (["A1001", "A1002"], True)
    assert ([i.accession_number for i in last.items], last.has_more) == (["A1006", "A1004"], False)
    assert [
        i.accession_number for i in scheduled.orders.search(OrderSearch(), clinician).items
    ] == ["A1002"]
    with pytest.raises(InvalidInput, match="limit"):
        scheduled.orders.search(OrderSearch(limit=0), DESK)


def test_details_carry_what_would_re_create_the_order_and_reading_is_audited(
    scheduled: Node,
) -> None:
    before = count(scheduled, AuditEvent)

    detail = scheduled.orders.detail("A1006", DESK)

    (procedure,) = detail.request.procedures
    assert procedure.study_instance_uid == "2.25.1006"
    assert [s.step_id for s in procedure.steps] == ["S1006A", "S1006B"]
    assert detail.step_statuses == ((StepStatus.SCHEDULED, StepStatus.SCHEDULED),)
    assert (detail.patient.name, detail.request.patient.identifier) == ("MÜLLER^LENA", "MRN2004")
    assert detail.created_at.tzinfo is not None
    with scheduled.database.reading() as session:
        last = session.execute(
            select(AuditEvent.event_id, AuditEvent.event_action, AuditEvent.patient_id)
            .order_by(AuditEvent.sequence.desc())
            .limit(1)
        ).one()
    assert count(scheduled, AuditEvent) == before + 1
    assert tuple(last) == ("110109", "R", "MRN2004")


def test_a_change_without_study_instance_uids_keeps_the_ones_the_modality_may_have(
    scheduled: Node,
) -> None:
    made_up = scheduled.orders.detail("A1003", DESK).request  # the HIS gave no UID
    uid = made_up.procedures[0].study_instance_uid
    without_uid = replace(
        made_up, procedures=tuple(replace(p, study_instance_uid=None) for p in made_up.procedures)
    )

    changed = scheduled.orders.change_for(None, without_uid, DESK)

    assert changed.study_instance_uids == (uid,)


def test_an_order_without_accession_number_or_ids_gets_them_made_up(node: Node) -> None:
    one = node.orders.place_for(CHILD, unnamed_order(), DESK)
    two = node.orders.place_for(CHILD, unnamed_order(procedures=2), DESK)

    assert one.accession_number.startswith("PP") and len(one.accession_number) == 14
    assert one.step_ids == (one.accession_number,)
    assert two.step_ids == (f"{two.accession_number}-1", f"{two.accession_number}-2")
    assert one.accession_number != two.accession_number


@pytest.mark.parametrize("problem", ["patient differs", "accession taken"])
def test_a_refused_order_leaves_its_patient_unregistered(node: Node, problem: str) -> None:
    node.orders.place_for(CHILD, replace(unnamed_order(), accession_number="TAKEN"), DESK)
    newcomer = PatientRegistration(identifiers=(PatientIdentity("MRN7002", "CHILDRENS"),))
    order = replace(unnamed_order(), patient=newcomer.primary, accession_number="TAKEN")
    if problem == "patient differs":
        order = replace(order, patient=CHILD.primary, accession_number="NEW1")
    patients, orders = count(node, Patient), count(node, ImagingOrder)

    with pytest.raises(InvalidInput if problem == "patient differs" else OrderExistsError):
        node.orders.place_for(newcomer, order, DESK)

    assert (count(node, Patient), count(node, ImagingOrder)) == (patients, orders)
