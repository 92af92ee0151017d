"""PID -> PatientRegistration: identifiers with their issuer, the name in DICOM PN order,
birth date and time, sex, the newborn's link to her mother, temporary identities, and an AE
naming the field for what cannot be kept."""

from __future__ import annotations

from datetime import date, time

import pytest

from pedipacs.hl7.adt import registration_from_pid
from pedipacs.hl7.messages import ErrorCode, Hl7ContentError, decode, parse
from pedipacs.model.ris import PatientIdentity, PatientRegistration
from support import hl7_samples as samples


def registration(data: bytes) -> PatientRegistration:
    pid = parse(*decode(data)).first("PID")
    assert pid is not None
    return registration_from_pid(pid)


def test_the_newborn_twin_is_registered_with_her_mother_and_birth_order() -> None:
    baby = registration(samples.adt())

    assert baby.identifiers == (PatientIdentity("T-77", "CHILDRENS", "TMP"),)
    assert baby.name == "LEFEVRE^BABY GIRL"
    assert (baby.birth_date, baby.birth_time) == (date(2026, 11, 24), time(3, 42))
    assert baby.sex == "F"
    assert baby.mother == PatientIdentity(samples.MOTHER_MRN, "CHILDRENS", "MR")
    assert (baby.multiple_birth, baby.birth_order) == ("Y", 2)
    assert baby.is_temporary


def test_every_pid_3_repetition_is_kept_and_the_first_is_primary() -> None:
    data = samples.with_field(
        samples.adt(), "PID", 3, "MRN1001^^^CHILDRENS^MR~~4471^^^^^^NIR&1.2.250&ISO"
    )

    patient = registration(data)

    assert patient.identifiers == (
        PatientIdentity("MRN1001", "CHILDRENS", "MR"),
        PatientIdentity("4471", "", None),
    )
    assert not patient.is_temporary  # an MR number, no PID-31


def test_the_issuer_falls_back_to_the_universal_id() -> None:
    data = samples.with_field(samples.adt(), "PID", 3, "MRN1001^^^&1.2.250.1.999.1&ISO^MR")

    assert registration(data).primary.issuer == "1.2.250.1.999.1"


def test_pid_31_marks_an_unknown_patient_as_temporary() -> None:
    data = samples.with_field(samples.adt(), "PID", 3, "E-2^^^CHILDRENS^MR")

    assert registration(samples.with_field(data, "PID", 31, "Y")).is_temporary
    assert not registration(samples.with_field(data, "PID", 31, "N")).is_temporary


def test_a_name_is_reordered_from_xpn_to_dicom_pn() -> None:
    # XPN: family^given^middle^suffix^prefix^degree^type
    data = samples.with_field(samples.adt(), "PID", 5, "DUPONT^JEAN^PAUL^JR^DR^MD^L")

    assert registration(data).name == "DUPONT^JEAN^PAUL^DR^JR"


def test_the_legal_name_is_preferred_over_an_alias() -> None:
    data = samples.with_field(samples.adt(), "PID", 5, "LOULOU^^^^^^A~LEFEVRE^LEA^^^^^L")

    assert registration(data).name == "LEFEVRE^LEA"


@pytest.mark.parametrize(("hl7", "dicom"), [("M", "M"), ("A", "O"), ("U", None), ("", None)])
def test_sex_is_mapped_to_dicom(hl7: str, dicom: str | None) -> None:
    assert registration(samples.with_field(samples.adt(), "PID", 8, hl7)).sex == dicom


@pytest.mark.parametrize(
    ("field", "value", "location", "code"),
    [
        (3, "", "PID-3", ErrorCode.REQUIRED_FIELD_MISSING),
        (3, "^^^CHILDRENS^MR", "PID-3", ErrorCode.REQUIRED_FIELD_MISSING),
        (3, "A" * 65 + "^^^CHILDRENS", "PID-3.1", ErrorCode.DATA_TYPE_ERROR),
        (3, "X\\E\\1^^^CHILDRENS", "PID-3.1", ErrorCode.DATA_TYPE_ERROR),
        (5, "LE=FEVRE^LEA", "PID-5", ErrorCode.DATA_TYPE_ERROR),
        (7, "2026", "PID-7", ErrorCode.DATA_TYPE_ERROR),
        (8, "Q", "PID-8", ErrorCode.TABLE_VALUE_NOT_FOUND),
        (24, "2", "PID-24", ErrorCode.TABLE_VALUE_NOT_FOUND),
        (25, "two", "PID-25", ErrorCode.DATA_TYPE_ERROR),
    ],
)
def test_values_that_cannot_be_kept_name_their_field(
    field: int, value: str, location: str, code: ErrorCode
) -> None:
    data = samples.with_field(samples.adt(), "PID", field, value)

    with pytest.raises(Hl7ContentError) as raised:
        registration(data)

    assert str(raised.value.location) == location
    assert raised.value.code is code
    assert str(raised.value).startswith(f"PID-{field}")
