"""The values of an order (ORC, OBR, IPC, ZDS, PV1, OBX) as the worklist keeps them, each
refused with an AE naming its field when it cannot be kept: identifiers that fit SH, a valid
Study Instance UID, a DICOM modality code, the requested procedure code, the reason, the
referring physician in DICOM PN order, the patient class and weight."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pedipacs.hl7.messages import ErrorCode, Hl7ContentError, Location, Repetition, Segment, part
from pedipacs.hl7.values import checked_text, person_name
from pedipacs.model.identifiers import is_valid_uid

WEIGHT_CODES = frozenset({"29463-7", "3141-9", "8335-2", "8339-4"})  # LOINC body weights
KILOGRAMS_PER_UNIT = {"": 1.0, "KG": 1.0, "G": 0.001, "LB": 0.45359237, "[LB_AV]": 0.45359237}
MAX_WEIGHT = 1000.0  # kg
SHORT = 16  # SH, AE titles, CS
LONG = 64  # LO
MAX_REASON = 1024
MAX_PATIENT_CLASS = 8
_MODALITY = re.compile(r"^[A-Z0-9_ ]{1,16}$")


def short_id(segment: Segment, number: int, what: str) -> str | None:
    """An SH value (accession number, IDs, AE titles): at most 16 characters, no backslash."""
    location = segment.location(number, 1)
    value = checked_text(segment.value(number), location, what, SHORT)
    if value is not None and "\\" in value:
        raise Hl7ContentError(f"{location}: the {what} holds a backslash", location)
    return value


def study_instance_uid(segment: Segment, number: int) -> str | None:
    value = segment.value(number)
    if value and not is_valid_uid(value):
        raise Hl7ContentError(
            f"{segment.location(number)}: Study Instance UID {value[:70]!r} is not a valid UID",
            segment.location(number, 1),
        )
    return value or None


def modality(segment: Segment, number: int) -> str | None:
    """A DICOM Modality (CS): capitals, digits, '_' and spaces, at most 16."""
    value = segment.value(number).upper()
    if value and not _MODALITY.match(value):
        raise Hl7ContentError(
            f"{segment.location(number)}: modality {value[:20]!r} is not a DICOM modality code",
            segment.location(number, 1),
        )
    return value or None


def procedure_code(obr: Segment) -> tuple[str | None, str | None, str | None]:
    """OBR-4 (CE/CWE): code value, text, coding scheme."""
    location = obr.location(4)
    code = checked_text(obr.value(4, 1), location.at(1), "procedure code", SHORT)
    meaning = checked_text(obr.value(4, 2), location.at(2), "procedure text", LONG)
    scheme = checked_text(obr.value(4, 3), location.at(3), "procedure coding scheme", SHORT)
    if code is None and meaning is None:
        raise Hl7ContentError(
            "OBR-4 is empty: the requested procedure (code^text^coding scheme) is required",
            location,
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    return code, meaning, scheme


def first_text(
    candidates: Sequence[tuple[Segment | None, int] | tuple[Segment | None, int, int]],
    what: str,
    max_length: int,
) -> str | None:
    for candidate in candidates:
        segment, number = candidate[0], candidate[1]
        component = candidate[2] if len(candidate) > 2 else 1
        if segment is None:
            continue
        value = segment.value(number, component)
        if value:
            return checked_text(value, segment.location(number, component), what, max_length)
    return None


def reason(obr: Segment) -> str | None:
    """OBR-31 reasons for study (their text, else their code), else OBR-13."""
    reasons = [part(r, 2) or part(r, 1) for r in obr.repetitions(31)]
    if any(reasons):
        text, location = "; ".join(r for r in reasons if r), obr.location(31)
    else:
        text, location = obr.value(13), obr.location(13)
    return checked_text(text, location, "reason for study", MAX_REASON, multiline=True)


def referring_physician(orc: Segment, obr: Segment) -> str | None:
    """ORC-12 ordering provider, else OBR-16 (XCN: ID^family^given^middle^suffix^prefix)."""
    for segment, number in ((orc, 12), (obr, 16)):
        providers = segment.repetitions(number)
        if providers:
            return _name_from_xcn(providers[0], segment.location(number))
    return None


def _name_from_xcn(provider: Repetition, location: Location) -> str | None:
    return person_name(
        part(provider, 2, 1),
        part(provider, 3),
        part(provider, 4),
        part(provider, 6),
        part(provider, 5),
        location,
        "referring physician",
    )


def patient_class(pv1: Segment | None) -> str | None:
    if pv1 is None:
        return None
    return checked_text(pv1.value(2).upper(), pv1.location(2), "patient class", MAX_PATIENT_CLASS)


def point_of_care(pv1: Segment | None) -> str | None:
    """PV1-3.1, the unit the child is in (ED, NICU, a ward): the reading worklist's urgency."""
    if pv1 is None:
        return None
    return checked_text(pv1.value(3, 1).upper(), pv1.location(3, 1), "point of care", LONG)


def patient_weight(observations: list[Segment]) -> str | None:
    """The patient's weight in kg (DS) from the first body-weight OBX."""
    for obx in observations:
        code, text = obx.value(3, 1).upper(), obx.value(3, 2).upper()
        if code not in WEIGHT_CODES and "WEIGHT" not in code and "WEIGHT" not in text:
            continue
        unit = obx.value(6).upper()
        if unit not in KILOGRAMS_PER_UNIT:
            raise Hl7ContentError(
                f"OBX-6: weight unit {unit[:12]!r} is not kg, g or lb",
                obx.location(6),
                ErrorCode.TABLE_VALUE_NOT_FOUND,
            )
        value = obx.value(5)
        try:
            kilograms = float(value) * KILOGRAMS_PER_UNIT[unit]
        except ValueError:
            kilograms = -1.0
        if not 0 < kilograms < MAX_WEIGHT:
            raise Hl7ContentError(
                f"OBX-5: weight {value[:16]!r} is not a number of kg from 0 to 1000",
                obx.location(5),
            )
        return f"{kilograms:.3f}".rstrip("0").rstrip(".")
    return None
