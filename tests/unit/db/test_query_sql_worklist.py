"""The one query compiler serving the Modality Worklist: identifiers as a modality sends them,
in-process on both databases, against orders placed through the RIS services; the keys that
mean other columns than in the image hierarchy; the rule of which steps are on the worklist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select, update
from sqlalchemy.dialects import sqlite

from pedipacs.config import Settings
from pedipacs.db.query_sql import compile_query
from pedipacs.db.tables import AuditEvent, ImagingOrder, ScheduledStep
from pedipacs.dimse.identifier import query_from_identifier
from pedipacs.errors import InvalidQueryError
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import (
    DateTimeRange,
    KeyMatch,
    Query,
    SequenceMatch,
    SingleValue,
    Universal,
)
from pedipacs.model.records import QueryMatch
from pedipacs.model.ris import OrderStatus, OrderSummary, StepStatus
from pedipacs.node import Node
from support.databases import fresh_database
from support.worklist import schedule

MWL = InformationModel.MODALITY_WORKLIST
SPS = "ScheduledProcedureStepSequence"
MODALITY = Origin.dimse("US_ED_1", "PEDIPACS", "127.0.0.1")
QUERY_EVENT_ID = "110112"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def worklist_node(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[tuple[Node, dict[str, OrderSummary]]]:
    """One node per database for the module, holding the scheduled orders of support.worklist."""
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    directory = tmp_path_factory.mktemp(f"worklist_{request.param}")
    with fresh_database(request.param, directory) as url:
        node = Node.from_settings(
            Settings(data_dir=directory / "data", database_url=url, dicom_workers=1)
        )
        try:
            node.migrate()
            yield node, schedule(node.patients, node.orders)
        finally:
            node.stop()


def identifier(sps: dict[str, Any] | None = None, **top: Any) -> Dataset:
    """A worklist identifier as a modality sends it: top-level keys and one SPS item, which
    always asks for the step's ID (what the tests compare)."""
    dataset = Dataset()
    for keyword, value in top.items():
        setattr(dataset, keyword, value)
    item = Dataset()
    item.ScheduledProcedureStepID = ""
    for keyword, value in (sps or {}).items():
        setattr(item, keyword, value)
    dataset.ScheduledProcedureStepSequence = [item]
    return dataset


def find(node: Node, request: Dataset) -> list[QueryMatch]:
    return list(node.queries.find(query_from_identifier(request, MWL), MODALITY))


def step_ids(matches: list[QueryMatch]) -> list[str]:
    return sorted(str(m.items[SPS][0]["ScheduledProcedureStepID"]) for m in matches)


# -- matching keys a modality uses --------------------------------------------------------------

MATCHING = [
    ("station", identifier({"ScheduledStationAETitle": "US_ED_1"}), ["S1001", "S1003"]),
    (
        "station_and_date_range",
        identifier(
            {
                "ScheduledStationAETitle": "US_ED_1",
                "ScheduledProcedureStepStartDate": "20261125-20261126",
            }
        ),
        ["S1001", "S1003"],
    ),
    (
        "single_date",
        identifier({"ScheduledProcedureStepStartDate": "20261125"}),
        ["S1001", "S1002"],
    ),
    (
        "open_date_range",
        identifier({"ScheduledProcedureStepStartDate": "20261127-"}),
        ["S1004"],
    ),
    (
        "time_range",
        identifier({"ScheduledProcedureStepStartTime": "0800-1000"}),
        ["S1001", "S1003"],
    ),
    ("modality", identifier({"Modality": "US"}), ["S1001", "S1003", "S1006A"]),
    (
        "modality_and_date_range",
        identifier({"Modality": "DX", "ScheduledProcedureStepStartDate": "20261126-20261127"}),
        ["S1004", "S1006B"],
    ),
    # The keys of one item must all match one step: no US_ED_1 step is a CT.
    (
        "station_and_modality_of_other_steps",
        identifier({"ScheduledStationAETitle": "US_ED_1", "Modality": "CT"}),
        [],
    ),
    (
        "station_wildcard",
        identifier({"ScheduledStationAETitle": "US_ED_*"}),
        ["S1001", "S1003", "S1006A"],
    ),
    (
        "performing_physician",
        identifier({"ScheduledPerformingPhysicianName": "baker^sam"}),
        ["S1001"],
    ),
    (
        "step_status",
        identifier({"ScheduledProcedureStepStatus": "SCHEDULED"}),
        ["S1001", "S1002", "S1003", "S1004", "S1006A", "S1006B"],
    ),
    ("patient_name_any_case", identifier(PatientName="nguyen*"), ["S1001"]),
    (
        "patient_name_outside_ascii",
        identifier(PatientName="Müller^Lena"),
        ["S1004", "S1006A", "S1006B"],
    ),
    ("patient_id", identifier(PatientID="T-2003"), ["S1003"]),
    ("accession_number", identifier(AccessionNumber="A1002"), ["S1002"]),
    ("requested_procedure_id", identifier(RequestedProcedureID="RP1006"), ["S1006A", "S1006B"]),
    ("study_instance_uid", identifier(StudyInstanceUID="2.25.1004"), ["S1004"]),
    (
        "referring_physician",
        identifier(ReferringPhysicianName="OKAFOR*"),
        ["S1001", "S1002", "S1003", "S1004", "S1006A", "S1006B"],
    ),
    ("priority", identifier(RequestedProcedurePriority="STAT"), ["S1001"]),
    ("asap_is_high", identifier(RequestedProcedurePriority="HIGH"), ["S1003"]),
    # Keys the worklist does not hold (a study's date, an unknown sequence) never narrow it.
    (
        "unknown_keys_are_ignored",
        identifier(StudyDate="19990101", AdmissionID="X"),
        ["S1001", "S1002", "S1003", "S1004", "S1006A", "S1006B"],
    ),
]


@pytest.mark.parametrize(
    ("request_identifier", "expected"),
    [(request, expected) for _, request, expected in MATCHING],
    ids=[name for name, _, _ in MATCHING],
)
def test_worklist_returns_exactly_the_scheduled_steps_the_keys_match(
    worklist_node: tuple[Node, dict[str, OrderSummary]],
    request_identifier: Dataset,
    expected: list[str],
) -> None:
    node, _ = worklist_node

    assert step_ids(find(node, request_identifier)) == expected


def test_a_cancelled_order_is_not_on_the_worklist(
    worklist_node: tuple[Node, dict[str, OrderSummary]],
) -> None:
    node, orders = worklist_node

    assert find(node, identifier(AccessionNumber="A1005")) == []
    assert orders["A1005"].status is OrderStatus.CANCELLED


# -- return keys (PS3.4 K.6) ---------------------------------------------------------------------


K6_RETURN_KEYS = {
    "PatientName": "",
    "PatientID": "",
    "IssuerOfPatientID": "",
    "PatientBirthDate": "",
    "PatientSex": "",
    "PatientAge": "",
    "PatientWeight": "",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
    "RequestingPhysician": "",
    "ReasonForTheRequestedProcedure": "",
    "RequestedProcedurePriority": "",
    "PlacerOrderNumberImagingServiceRequest": "",
    "RequestedProcedureID": "",
    "RequestedProcedureDescription": "",
    "StudyInstanceUID": "",
    "AdmissionID": "",
}
SPS_RETURN_KEYS = {
    "ScheduledStationAETitle": "",
    "ScheduledStationName": "",
    "ScheduledProcedureStepStartDate": "",
    "ScheduledProcedureStepStartTime": "",
    "Modality": "",
    "ScheduledPerformingPhysicianName": "",
    "ScheduledProcedureStepDescription": "",
    "ScheduledProcedureStepStatus": "",
}


def test_every_return_key_carries_the_order_the_patient_and_the_step(
    worklist_node: tuple[Node, dict[str, OrderSummary]],
) -> None:
    node, _ = worklist_node
    request = identifier(
        {**SPS_RETURN_KEYS, "ScheduledStationAETitle": "US_ED_1"}, **K6_RETURN_KEYS
    )
    request.RequestedProcedureCodeSequence = []
    request.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence = []

    matches = {m.values["AccessionNumber"]: m for m in find(node, request)}

    assert sorted(matches) == ["A1001", "A1003"]
    stat = matches["A1001"]
    assert stat.values == {
        **{keyword: None for keyword in K6_RETURN_KEYS},
        "PatientName": "NGUYEN^LAN",
        "PatientID": "MRN2001",
        "IssuerOfPatientID": "CHILDRENS",
        "PatientBirthDate": "20250520",
        "PatientSex": "F",
        "PatientAge": "018M",  # on the day of the exam, 25 November 2026
        "PatientWeight": "11.2",
        "AccessionNumber": "A1001",
        "ReferringPhysicianName": "OKAFOR^ADA",
        "ReasonForTheRequestedProcedure": "Suspected intussusception",
        "RequestedProcedurePriority": "STAT",
        "PlacerOrderNumberImagingServiceRequest": "PLA1001",
        "RequestedProcedureID": "RP1001",
        "RequestedProcedureDescription": "US abdomen",
        "StudyInstanceUID": "2.25.1001",
        "ScheduledProcedureStepSequence": None,
        "RequestedProcedureCodeSequence": None,
    }
    assert stat.items == {
        "RequestedProcedureCodeSequence": (
            {
                "CodeValue": "RPID1001",
                "CodingSchemeDesignator": "99PEDI",
                "CodeMeaning": "US abdomen, paediatric",
            },
        ),
        SPS: (
            {
                "ScheduledProcedureStepID": "S1001",
                "ScheduledStationAETitle": "US_ED_1",
                "ScheduledStationName": "ED US 1",
                "ScheduledProcedureStepStartDate": "20261125",
                "ScheduledProcedureStepStartTime": "093000",
                "Modality": "US",
                "ScheduledPerformingPhysicianName": "BAKER^SAM",
                "ScheduledProcedureStepDescription": "US abdomen",
                "ScheduledProcedureStepStatus": "SCHEDULED",
                "ScheduledProtocolCodeSequence": None,
            },
        ),
    }


def test_a_newborns_item_carries_the_age_in_days_and_the_study_uid_made_up_for_the_order(
    worklist_node: tuple[Node, dict[str, OrderSummary]],
) -> None:
    node, orders = worklist_node
    request = identifier(PatientID="T-2003", PatientAge="", StudyInstanceUID="",
                         RequestedProcedurePriority="")  # fmt: skip
    request.RequestedProcedureCodeSequence = []

    (match,) = find(node, request)

    assert match.values["PatientAge"] == "006D"
    assert match.values["RequestedProcedurePriority"] == "HIGH"  # ordered ASAP
    assert match.values["StudyInstanceUID"] == orders["A1003"].study_instance_uids[0]
    assert match.items["RequestedProcedureCodeSequence"] == ()  # the order named no code


def test_an_empty_scheduled_procedure_step_sequence_asks_for_all_its_attributes(
    worklist_node: tuple[Node, dict[str, OrderSummary]],
) -> None:
    node, _ = worklist_node
    request = Dataset()
    request.AccessionNumber = "A1002"
    request.ScheduledProcedureStepSequence = []

    (match,) = find(node, request)

    assert match.items[SPS][0]["ScheduledStationAETitle"] == "CT_MAIN"
    assert match.items[SPS][0]["ScheduledProcedureStepStartTime"] == "140000"
    assert set(match.items[SPS][0]) >= {"ScheduledProcedureStepID", "Modality", *SPS_RETURN_KEYS}


def test_a_worklist_query_is_audited_naming_the_model_and_the_sequence_keys(
    worklist_node: tuple[Node, dict[str, OrderSummary]],
) -> None:
    node, _ = worklist_node

    find(node, identifier({"ScheduledStationAETitle": "CT_MAIN"}, PatientName=""))

    with node.database.reading() as session:
        details = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.event_id == QUERY_EVENT_ID)
        ).all()
    assert any(
        detail is not None
        and detail.startswith("MODALITY_WORKLIST ")
        and "ScheduledProcedureStepSequence.ScheduledStationAETitle=" in detail
        and "CT_MAIN" in detail
        for detail in details
    )


# -- which steps are on the worklist -------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_status", "step_status", "is_listed"),
    [
        (OrderStatus.SCHEDULED, StepStatus.SCHEDULED, True),
        (OrderStatus.ARRIVED, StepStatus.ARRIVED, True),
        (OrderStatus.ARRIVED, StepStatus.READY, True),
        (OrderStatus.IN_PROGRESS, StepStatus.SCHEDULED, True),  # another step was started
        (OrderStatus.IN_PROGRESS, StepStatus.STARTED, False),
        (OrderStatus.COMPLETED, StepStatus.COMPLETED, False),
        (OrderStatus.COMPLETED, StepStatus.SCHEDULED, False),  # the order is over
        (OrderStatus.DISCONTINUED, StepStatus.DISCONTINUED, False),
        (OrderStatus.REPORTED, StepStatus.SCHEDULED, False),
    ],
)
def test_a_step_is_listed_only_while_it_is_to_be_done_and_its_order_open(
    node: Node, order_status: OrderStatus, step_status: StepStatus, is_listed: bool
) -> None:
    schedule(node.patients, node.orders)
    # What the MPPS and reconciliation services will do; set here directly.
    with node.database.unit_of_work() as session:
        session.execute(
            update(ImagingOrder)
            .where(ImagingOrder.accession_number == "A1002")
            .values(status=str(order_status))
        )
        session.execute(
            update(ScheduledStep)
            .where(ScheduledStep.step_id == "S1002")
            .values(status=str(step_status))
        )

    found = step_ids(find(node, identifier(AccessionNumber="A1002")))

    assert found == (["S1002"] if is_listed else [])


# -- compiled SQL ----------------------------------------------------------------------------------


def _sql(query: Query) -> str:
    return str(compile_query(query).compile(dialect=sqlite.dialect()))


def _worklist(*key_matches: KeyMatch) -> Query:
    return Query(MWL, QueryLevel.SCHEDULED_PROCEDURE_STEP, key_matches=key_matches)


def test_a_keyword_means_the_column_of_the_query_s_information_model() -> None:
    accession = KeyMatch("AccessionNumber", SingleValue("A1"))

    worklist = _sql(_worklist(accession))
    studies = _sql(Query(InformationModel.STUDY_ROOT, QueryLevel.STUDY, key_matches=(accession,)))

    assert "imaging_order.accession_number = " in worklist
    assert "study.accession_number = " in studies
    assert "imaging_order" not in studies and "scheduled_step" not in studies


def test_keys_inside_the_step_sequence_match_the_step_s_columns() -> None:
    sql = _sql(
        _worklist(
            KeyMatch(
                SPS,
                SequenceMatch(
                    (
                        KeyMatch("ScheduledStationAETitle", SingleValue("US_ED_1")),
                        KeyMatch("Modality", SingleValue("US")),
                        KeyMatch("ScheduledProcedureStepStartDate", Universal()),
                    )
                ),
            )
        )
    )

    assert "scheduled_step.station_ae_title = " in sql
    assert "scheduled_step.modality = " in sql
    assert "scheduled_step.start_date >=" not in sql
    assert "scheduled_step.status IN " in sql and "imaging_order.status IN " in sql


def test_a_worklist_query_cannot_range_match_a_text_key_inside_the_sequence() -> None:
    query = _worklist(
        KeyMatch(
            SPS, SequenceMatch((KeyMatch("ScheduledStationAETitle", DateTimeRange("A", "B")),))
        )
    )

    with pytest.raises(InvalidQueryError):
        compile_query(query)


def test_patient_age_is_returned_but_never_narrows_the_worklist() -> None:
    assert "patient_birth_date =" not in _sql(
        _worklist(KeyMatch("PatientAge", SingleValue("018M")))
    )
