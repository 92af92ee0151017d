"""The DICOM audit message (PS3.15 A.5.1) built from one audit record."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from xml.etree import ElementTree

import pytest

from pedipacs.security.audit import AuditEventId, AuditOutcome
from pedipacs.security.audit_message import AuditSource, audit_message_xml

SOURCE = AuditSource("PEDIPACS", "pacs01.hospital.example")
STUDY_UID = "1.2.826.0.1.3680043.10.1234"


def audit_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sequence": 12,
        "record_hash": "ab" * 32,
        "at": datetime(2026, 11, 25, 9, 30, 1, 250000),  # naive UTC, as SQLite returns it
        "event_id": "110104",
        "event_name": "DICOM Instances Transferred",
        "event_action": "R",
        "outcome": 0,
        "door": "DIMSE",
        "user": None,
        "remote_host": "10.1.2.3",
        "remote_ae": "CTWS",
        "patient_id": "P-0042",
        "study_instance_uid": STUDY_UID,
        "detail": "3 instances",
    }
    row.update(changes)
    return row


def parsed(row: dict[str, Any]) -> ElementTree.Element:
    return ElementTree.fromstring(audit_message_xml(row, SOURCE))


def only(root: ElementTree.Element, path: str) -> ElementTree.Element:
    found = root.findall(path)
    assert len(found) == 1, f"{path}: {len(found)} elements"
    return found[0]


def test_event_identification_carries_the_dicom_event_action_time_and_outcome() -> None:
    root = parsed(audit_row())

    assert root.tag == "AuditMessage"
    event = only(root, "EventIdentification")
    assert event.attrib == {
        "EventActionCode": "R",
        "EventDateTime": "2026-11-25T09:30:01.250000Z",
        "EventOutcomeIndicator": "0",
    }
    assert only(event, "EventID").attrib == {
        "csd-code": "110104",
        "codeSystemName": "DCM",
        "originalText": "DICOM Instances Transferred",
    }
    assert event.findtext("EventOutcomeDescription") == "3 instances"


@pytest.mark.parametrize("event", list(AuditEventId), ids=lambda event: event.name)
def test_every_audit_event_id_is_sent_with_its_dcm_code_and_meaning(event: AuditEventId) -> None:
    code, meaning = event.value
    root = parsed(audit_row(event_id=code, event_name=meaning))

    assert only(root, "EventIdentification/EventID").attrib == {
        "csd-code": code,
        "codeSystemName": "DCM",
        "originalText": meaning,
    }


@pytest.mark.parametrize("outcome", list(AuditOutcome), ids=lambda outcome: outcome.name)
def test_the_outcome_indicator_is_the_records_outcome(outcome: AuditOutcome) -> None:
    root = parsed(audit_row(outcome=int(outcome)))

    assert only(root, "EventIdentification").get("EventOutcomeIndicator") == str(int(outcome))


def test_an_aware_postgresql_time_is_written_in_utc() -> None:
    at = datetime(2026, 11, 25, 10, 30, 1, 250000, tzinfo=timezone(timedelta(hours=1)))
    root = parsed(audit_row(at=at))

    assert only(root, "EventIdentification").get("EventDateTime") == "2026-11-25T09:30:01.250000Z"


def test_a_remote_application_is_the_requestor_and_pedipacs_the_other_participant() -> None:
    requestor, pedipacs = parsed(audit_row()).findall("ActiveParticipant")

    assert requestor.attrib == {
        "UserID": "CTWS",
        "AlternativeUserID": "AETITLES=CTWS",
        "UserIsRequestor": "true",
        "NetworkAccessPointID": "10.1.2.3",
        "NetworkAccessPointTypeCode": "2",
    }
    assert pedipacs.get("UserID") == "PEDIPACS"
    assert pedipacs.get("AlternativeUserID") == "AETITLES=PEDIPACS"
    assert pedipacs.get("UserIsRequestor") == "false"
    assert pedipacs.get("NetworkAccessPointID") == "pacs01.hospital.example"
    assert pedipacs.get("NetworkAccessPointTypeCode") == "1"
    assert only(pedipacs, "RoleIDCode").attrib == {
        "csd-code": "110150",
        "codeSystemName": "DCM",
        "originalText": "Application",
    }


def test_a_signed_in_user_is_the_requestor_by_name() -> None:
    requestor = parsed(
        audit_row(door="HTTP", user="dr.lee", remote_ae=None, remote_host="clinic-pc-7")
    ).findall("ActiveParticipant")[0]

    assert requestor.attrib == {
        "UserID": "dr.lee",
        "UserIsRequestor": "true",
        "NetworkAccessPointID": "clinic-pc-7",
        "NetworkAccessPointTypeCode": "1",
    }


def test_without_a_user_or_peer_pedipacs_itself_is_the_requestor() -> None:
    participants = parsed(
        audit_row(door="JOB", user=None, remote_ae=None, remote_host=None)
    ).findall("ActiveParticipant")

    assert len(participants) == 1
    assert participants[0].get("UserID") == "PEDIPACS"
    assert participants[0].get("UserIsRequestor") == "true"


def test_the_audit_source_is_the_nodes_ae_title() -> None:
    source = only(parsed(audit_row()), "AuditSourceIdentification")

    assert source.attrib == {"AuditSourceID": "PEDIPACS"}
    assert only(source, "AuditSourceTypeCode").attrib == {"csd-code": "4"}


def test_the_patient_and_the_study_are_participant_objects() -> None:
    patient, study = parsed(audit_row()).findall("ParticipantObjectIdentification")

    assert patient.attrib == {
        "ParticipantObjectID": "P-0042",
        "ParticipantObjectTypeCode": "1",
        "ParticipantObjectTypeCodeRole": "1",
    }
    assert only(patient, "ParticipantObjectIDTypeCode").attrib == {
        "csd-code": "2",
        "codeSystemName": "RFC-3881",
        "originalText": "Patient Number",
    }
    assert study.attrib == {
        "ParticipantObjectID": STUDY_UID,
        "ParticipantObjectTypeCode": "2",
        "ParticipantObjectTypeCodeRole": "3",
    }
    assert only(study, "ParticipantObjectIDTypeCode").attrib == {
        "csd-code": "110180",
        "codeSystemName": "DCM",
        "originalText": "Study Instance UID",
    }


def test_a_record_without_patient_or_study_has_no_participant_objects() -> None:
    root = parsed(audit_row(patient_id=None, study_instance_uid=None, detail=None))

    assert root.findall("ParticipantObjectIdentification") == []
    assert root.find("EventIdentification/EventOutcomeDescription") is None


def test_elements_come_in_the_schemas_order() -> None:
    children = [child.tag for child in parsed(audit_row())]

    assert children == [
        "EventIdentification",
        "ActiveParticipant",
        "ActiveParticipant",
        "AuditSourceIdentification",
        "ParticipantObjectIdentification",
        "ParticipantObjectIdentification",
    ]
    event_children = [child.tag for child in only(parsed(audit_row()), "EventIdentification")]
    assert event_children == ["EventID", "EventOutcomeDescription"]


def test_markup_and_characters_xml_cannot_carry_still_give_a_well_formed_message() -> None:
    hostile = "a<b>&\"c' \x00\x07 \ud800 ]]> é"
    message = audit_message_xml(
        audit_row(detail=hostile, user=hostile, patient_id=hostile, remote_ae=None), SOURCE
    )

    root = ElementTree.fromstring(message)  # well-formed, or this raises
    expected = "a<b>&\"c' \ufffd\ufffd \ufffd ]]> é"
    assert root.findtext("EventIdentification/EventOutcomeDescription") == expected
    assert root.findall("ActiveParticipant")[0].get("UserID") == expected
    assert root.findall("ParticipantObjectIdentification")[0].get("ParticipantObjectID") == (
        expected
    )
    assert message.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    message.decode("utf-8")


def test_an_unknown_action_is_left_out_and_an_unknown_outcome_counts_as_serious() -> None:
    event = only(parsed(audit_row(event_action="X", outcome=3)), "EventIdentification")

    assert "EventActionCode" not in event.attrib
    assert event.get("EventOutcomeIndicator") == "8"
