"""ORM^O01 and OMI^O23 -> order actions: the fields IHE Scheduled Workflow puts where, the
fallbacks, and an AE naming the field for what is missing or wrong."""

from __future__ import annotations

from datetime import datetime

import pytest

from pedipacs.hl7.messages import ErrorCode, Hl7ContentError, decode, parse
from pedipacs.hl7.orm import OrderAction, actions_from_message
from pedipacs.model.ris import PatientIdentity, Priority
from support import hl7_samples as samples


def actions(data: bytes) -> list[OrderAction]:
    return actions_from_message(parse(*decode(data)))[1]


def test_an_orm_new_order_carries_every_worklist_field() -> None:
    [action] = actions(samples.orm())

    assert (action.control, action.accession_number) == ("NW", samples.ACCESSION)
    order = action.order
    assert order is not None
    assert order.patient == PatientIdentity("T-77", "CHILDRENS", "TMP")
    assert order.priority is Priority.STAT
    assert (order.placer_order_number, order.filler_order_number) == ("PL-9001", "FL-4411")
    assert order.reason == "Screening for intraventricular haemorrhage"
    assert order.referring_physician == "OKAFOR^ADA^^DR"
    assert order.ordering_department == "Neonatology"
    assert order.patient_class == "I"
    assert order.patient_weight == "1.58"
    assert order.ordered_at == datetime(2026, 11, 25, 8, 12)
    [procedure] = order.procedures
    assert procedure.requested_procedure_id == "RP1"
    assert (procedure.code_value, procedure.code_meaning, procedure.coding_scheme) == (
        "76506",
        "US HEAD NEONATAL",
        "C4",
    )
    assert procedure.study_instance_uid == samples.STUDY_UID
    [step] = procedure.steps
    assert (step.step_id, step.modality, step.station_ae_title) == ("SPS1", "US", "US_NICU_1")
    assert step.start == datetime(2026, 11, 25, 10, 30)
    assert step.description == "US HEAD NEONATAL"


def test_an_omi_order_reads_its_dicom_identifiers_from_ipc() -> None:
    [action] = actions(samples.omi())

    order = action.order
    assert order is not None
    assert action.accession_number == samples.OMI_ACCESSION
    assert order.priority is Priority.ASAP  # TQ1-9
    assert order.reason == "Respiratory distress"
    [procedure] = order.procedures
    assert procedure.study_instance_uid == samples.OMI_STUDY_UID
    [step] = procedure.steps
    assert (step.step_id, step.modality, step.station_ae_title, step.station_name) == (
        "SPS1",
        "DX",
        "XR_NICU_1",
        "XR_NICU_PORT",
    )
    assert step.start == datetime(2026, 11, 25, 14, 0)  # TQ1-7


def test_a_cancel_needs_only_the_accession_number() -> None:
    [action] = actions(samples.without_segment(samples.orm(control="CA"), "PID"))

    assert (action.control, action.accession_number) == ("CA", samples.ACCESSION)
    assert action.order is None
    assert action.reason == "Cancelled by the ward"


def test_identifiers_fall_back_to_the_accession_number() -> None:
    data = samples.with_field(samples.with_field(samples.orm(), "OBR", 19, ""), "OBR", 20, "")

    [action] = actions(data)

    assert action.order is not None
    [procedure] = action.order.procedures
    assert procedure.requested_procedure_id == samples.ACCESSION
    assert procedure.steps[0].step_id == samples.ACCESSION


def test_the_filler_order_number_stands_in_for_a_missing_accession_number() -> None:
    [action] = actions(samples.with_field(samples.orm(), "OBR", 18, ""))

    assert action.accession_number == "FL-4411"


def test_the_weight_is_converted_to_kilograms() -> None:
    data = samples.with_field(samples.with_field(samples.orm(), "OBX", 5, "1580"), "OBX", 6, "g")

    [action] = actions(data)

    assert action.order is not None
    assert action.order.patient_weight == "1.58"


@pytest.mark.parametrize(
    ("segment", "field", "value", "location", "code"),
    [
        ("OBR", 4, "", "OBR-4", ErrorCode.REQUIRED_FIELD_MISSING),
        ("ORC", 1, "OK", "ORC-1", ErrorCode.TABLE_VALUE_NOT_FOUND),
        ("ORC", 1, "", "ORC-1", ErrorCode.REQUIRED_FIELD_MISSING),
        ("ORC", 7, "^^^202611251030^^X", "ORC-7.6", ErrorCode.TABLE_VALUE_NOT_FOUND),
        ("OBR", 18, "A" * 17, "OBR-18.1", ErrorCode.DATA_TYPE_ERROR),
        ("OBR", 24, "ULTRA-SOUND", "OBR-24.1", ErrorCode.DATA_TYPE_ERROR),
        ("ZDS", 1, "1.2.3.abc", "ZDS-1.1", ErrorCode.DATA_TYPE_ERROR),
        ("OBX", 5, "heavy", "OBX-5", ErrorCode.DATA_TYPE_ERROR),
        ("OBX", 6, "stone", "OBX-6", ErrorCode.TABLE_VALUE_NOT_FOUND),
        ("ORC", 7, "^^^20261325^^S", "ORC-7.4", ErrorCode.DATA_TYPE_ERROR),
    ],
)
def test_wrong_order_fields_are_named(
    segment: str, field: int, value: str, location: str, code: ErrorCode
) -> None:
    data = samples.with_field(samples.orm(), segment, field, value)

    with pytest.raises(Hl7ContentError) as raised:
        actions(data)

    assert str(raised.value.location) == location
    assert raised.value.code is code


def test_a_new_order_without_pid_is_refused() -> None:
    with pytest.raises(Hl7ContentError) as raised:
        actions(samples.without_segment(samples.orm(), "PID"))

    assert str(raised.value.location) == "PID"
    assert raised.value.code is ErrorCode.SEGMENT_SEQUENCE_ERROR


def test_an_obr_before_any_orc_is_a_segment_sequence_error() -> None:
    data = samples.orm()
    text = data.decode()
    orc = next(s for s in text.split("\r") if s.startswith("ORC"))
    reordered = text.replace(orc + "\r", "").replace("ZDS|", orc + "\rZDS|")

    with pytest.raises(Hl7ContentError) as raised:
        actions(reordered.encode())

    assert raised.value.code is ErrorCode.SEGMENT_SEQUENCE_ERROR


def test_two_groups_with_one_accession_make_one_order_with_two_steps() -> None:
    text = samples.orm().decode()
    group = text[text.index("ORC|") : text.index("ZDS|")]
    second = group.replace("|SPS1|", "|SPS2|").replace("|US_NICU_1|", "|US_NICU_2|")

    [action] = actions(text.replace("ZDS|", second + "ZDS|").encode())

    assert action.order is not None
    [procedure] = action.order.procedures
    assert [s.step_id for s in procedure.steps] == ["SPS1", "SPS2"]
