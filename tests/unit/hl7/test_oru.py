"""ORU^R01 as pedipacs writes it, read back by an independent parser (python-hl7): the
segments and fields a HIS reads, escaping of delimiters in report text, line breaks kept as
formatted text, the result status of each release, and acknowledgements read."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import hl7

from pedipacs.hl7.oru import acknowledgement_code, build_oru, result_status
from pedipacs.model.reports import PatientLine, ReportStatus, VersionKind
from pedipacs.reports.distribution import ReportDocument

SIGNED_AT = datetime(2026, 12, 7, 3, 12, 45, tzinfo=UTC)
DOCUMENT = ReportDocument(
    report_id=12,
    version=3,
    kind=VersionKind.FINAL,
    status=ReportStatus.FINAL,
    accession_number="E6001",
    placer_order_number="PL77",
    filler_order_number=None,
    patient=PatientLine("MRN6001", "CHILDRENS", "NGUYEN^LAN", date(2019, 5, 20), "F"),
    patient_class="E",
    referring_physician="OKAFOR^ADA",
    procedure="US abdomen",
    procedure_code="USABD",
    reason="Right iliac fossa pain",
    study_instance_uid="1.2.826.0.1.3680043.10.6.1",
    modalities=("US",),
    sections=(
        ("Clinical information", "Fever | pain ^ vomiting & more"),
        ("Findings", "Appendix 9 mm.\nNo free fluid."),
        ("Impression", "Acute appendicitis."),
    ),
    addenda=(),
    critical_finding="Perforation suspected",
    author="dr.reed",
    signed_by="dr.reed",
    signed_by_name="REED^AMARA",
    observed_at=SIGNED_AT,
    ordered_at=None,
)


def parsed(document: ReportDocument = DOCUMENT) -> hl7.Message:
    text = build_oru(document, control_id="PPR1", now=SIGNED_AT)
    assert all(line for line in text.split("\r")[:-1])  # no empty segment
    return hl7.parse(text)


def test_the_message_carries_patient_order_and_result_status() -> None:
    message = parsed()
    assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(message.segment("MSH")[10]) == "PPR1"
    assert str(message.segment("MSH")[18]) == "UNICODE UTF-8"
    pid = message.segment("PID")
    assert str(pid[3]) == "MRN6001^^^CHILDRENS^MR"
    assert (str(pid[5]), str(pid[7]), str(pid[8])) == ("NGUYEN^LAN", "20190520", "F")
    assert str(message.segment("PV1")[2]) == "E"
    obr = message.segment("OBR")
    assert (str(obr[2]), str(obr[3]), str(obr[18])) == ("PL77", "E6001", "E6001")
    assert (str(obr[4]), str(obr[25]), str(obr[32])) == ("USABD^US abdomen^L", "F", "&REED&AMARA")
    assert str(obr[16]) == "^OKAFOR^ADA"
    assert str(obr[22]) == "20261207031245+0000"


def test_report_text_is_escaped_and_keeps_its_lines() -> None:
    observations = {str(obx[3][0][0]): obx for obx in parsed().segments("OBX")}
    clinical = observations["CLINICAL_INFORMATION"]
    assert str(clinical[5]) == r"Fever \F\ pain \S\ vomiting \T\ more"
    assert str(observations["FINDINGS"][5]) == r"Appendix 9 mm.\.br\No free fluid."
    assert {str(obx[2]) for obx in observations.values()} >= {"FT"}
    impression = observations["IMPRESSION"]
    assert (str(impression[8]), str(impression[11])) == ("AA", "F")
    assert str(observations["CRITICAL"][5]) == "Perforation suspected"
    assert str(observations["113014"][5]) == "1.2.826.0.1.3680043.10.6.1"


def test_preliminary_final_and_addendum_statuses() -> None:
    preliminary = replace(DOCUMENT, kind=VersionKind.PRELIMINARY, status=ReportStatus.PRELIMINARY)
    addendum = replace(
        DOCUMENT,
        kind=VersionKind.ADDENDUM,
        status=ReportStatus.AMENDED,
        addenda=(("Free fluid after all.", "dr.osei", SIGNED_AT),),
    )
    assert [result_status(d) for d in (preliminary, DOCUMENT, addendum)] == ["P", "F", "C"]
    [added] = [obx for obx in parsed(addendum).segments("OBX") if str(obx[3][0][0]) == "ADDENDUM"]
    assert str(added[5]) == r"Addendum by dr.osei, 2026-12-07 03:12 UTC:\.br\Free fluid after all."


def test_acknowledgements_are_read_whatever_their_separator() -> None:
    ack = b"MSH#^~\\&#HIS##PEDIPACS##20261207##ACK#9#P#2.5.1\rMSA#AE#PPR1#bad PID\r"
    assert acknowledgement_code(ack) == ("AE", "bad PID")
    assert acknowledgement_code(b"MSH|^~\\&|HIS\rMSA|AA|PPR1\r") == ("AA", "")
    assert acknowledgement_code(b"garbage") == ("", "")
