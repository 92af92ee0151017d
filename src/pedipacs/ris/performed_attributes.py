"""The attribute rules of MPPS (PS3.4 Table F.7.2-1) on DICOM JSON: what an N-CREATE must
carry, what an N-SET may not change, what a step ended COMPLETED or DISCONTINUED must hold by
then, the dates, times and UIDs pedipacs reads, and how an N-SET merges into what is kept.

Each refusal is an `AttributeRuleError` naming its attribute, so the door can list it
(`ris/performed.py` applies these rules in its state machine).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID

from pedipacs.errors import InvalidInput, MissingAttributeError

JsonObject = dict[str, Any]


class PerformedProcedureStepStatus(StrEnum):
    """Performed Procedure Step Status (0040,0252), PS3.3 C.4.14."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


FINAL = frozenset(
    {PerformedProcedureStepStatus.COMPLETED, PerformedProcedureStepStatus.DISCONTINUED}
)


# -- errors: each names the attribute, so the door can list it ----------------------------------


class AttributeRuleError(InvalidInput):
    """An attribute breaks the rules of PS3.4 Table F.7.2-1; `keyword` names it."""

    def __init__(self, message: str, keyword: str) -> None:
        super().__init__(message)
        self.keyword = keyword


class RequiredAttributeMissingError(AttributeRuleError, MissingAttributeError):
    """A type 1 attribute was not sent at all."""


class RequiredValueMissingError(AttributeRuleError, MissingAttributeError):
    """A type 1 attribute was sent without a value."""


class InvalidAttributeValueError(AttributeRuleError):
    """An attribute has a value the standard does not allow here."""


# -- the attributes the rules look at -----------------------------------------------------------


def _key(keyword: str) -> str:
    """The DICOM JSON key of an attribute.

    >>> _key("PerformedProcedureStepStatus")
    '00400252'
    """
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


SPECIFIC_CHARACTER_SET = _key("SpecificCharacterSet")
STATUS = "PerformedProcedureStepStatus"
SCHEDULED_STEPS = "ScheduledStepAttributesSequence"
# Type 1 in the N-CREATE (PS3.4 Table F.7.2-1); the status is checked first, on its own.
REQUIRED_ON_CREATE = (
    SCHEDULED_STEPS,
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "Modality",
)
# Type 1 in the final state (COMPLETED or DISCONTINUED), whichever request brought them.
REQUIRED_WHEN_ENDED = (
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "PerformedSeriesSequence",  # at least one series, even one holding no image
)
# "Not allowed" in an N-SET: what identifies the step, its patient and its schedule. Sent again
# unchanged they are accepted (some modalities repeat them); changed they are refused.
FIXED_AT_CREATE = (
    SCHEDULED_STEPS,
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "ReferencedPatientSequence",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedStationName",
    "PerformedLocation",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "Modality",
    "StudyID",
)
_DATES = ("PerformedProcedureStepStartDate", "PerformedProcedureStepEndDate")
_TIMES = ("PerformedProcedureStepStartTime", "PerformedProcedureStepEndTime")
_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
MAX_CS = 16  # Modality (CS), as the performed_step column keeps it


def attribute_values(attributes: Mapping[str, Any], keyword: str) -> list[Any] | None:
    """The values of an attribute; None when it was not sent, [] when sent empty."""
    element = attributes.get(_key(keyword))
    if element is None:
        return None
    return list(element.get("Value") or [])


def attribute_text(attributes: Mapping[str, Any], keyword: str) -> str | None:
    """The first value as text (a person name's alphabetic form); None when absent or empty."""
    values = attribute_values(attributes, keyword)
    if not values or values[0] is None:
        return None
    value = values[0]
    if isinstance(value, dict):  # PN
        return str(value.get("Alphabetic") or "") or None
    return str(value).strip() or None


def _require(attributes: Mapping[str, Any], keyword: str, context: str = "") -> None:
    values = attribute_values(attributes, keyword)
    if values is None:
        raise RequiredAttributeMissingError(f"{keyword}{context} is required", keyword)
    if not any(value not in (None, "", {}) for value in values):
        raise RequiredValueMissingError(f"{keyword}{context} has no value", keyword)


def _check_status(attributes: Mapping[str, Any], allowed: Iterable[str]) -> None:
    if attribute_values(attributes, STATUS) is None:
        return
    status = attribute_text(attributes, STATUS) or ""
    if status not in allowed:
        raise InvalidAttributeValueError(
            f"{STATUS} {status!r}: must be {' or '.join(allowed)}", STATUS
        )


def _check_values(attributes: Mapping[str, Any]) -> None:
    """Values pedipacs reads and keeps in columns must be well formed."""
    for keyword, pattern in [*((k, _DA) for k in _DATES), *((k, _TM) for k in _TIMES)]:
        value = attribute_text(attributes, keyword)
        if value is not None and not pattern.fullmatch(value):
            raise InvalidAttributeValueError(f"{keyword} {value!r} is malformed", keyword)
    modality = attribute_text(attributes, "Modality")
    if modality is not None and len(modality) > MAX_CS:
        raise InvalidAttributeValueError(f"Modality {modality!r} is too long", "Modality")
    for item in attribute_values(attributes, SCHEDULED_STEPS) or []:
        study_uid = attribute_text(item, "StudyInstanceUID")
        if study_uid is not None and not UID(study_uid).is_valid:
            raise InvalidAttributeValueError(
                f"{SCHEDULED_STEPS} > StudyInstanceUID {study_uid!r} is not a valid UID",
                "StudyInstanceUID",
            )


def check_created(attributes: Mapping[str, Any]) -> None:
    """Refuse an N-CREATE that PS3.4 F.7.2.1 does not allow, naming the attribute."""
    _require(attributes, STATUS)
    _check_status(attributes, [PerformedProcedureStepStatus.IN_PROGRESS])
    for keyword in REQUIRED_ON_CREATE:
        _require(attributes, keyword)
    for item in attribute_values(attributes, SCHEDULED_STEPS) or []:
        _require(item, "StudyInstanceUID", f" in each {SCHEDULED_STEPS} item")
    _check_values(attributes)


def check_modifications(stored: Mapping[str, Any], modifications: Mapping[str, Any]) -> None:
    """Refuse an N-SET that changes what the N-CREATE fixed, or sends a malformed value."""
    _check_status(modifications, list(PerformedProcedureStepStatus))
    for keyword in FIXED_AT_CREATE:
        if _key(keyword) not in modifications:
            continue
        kept = attribute_values(stored, keyword) or []  # absent: empty
        if attribute_values(modifications, keyword) != kept:
            raise InvalidAttributeValueError(
                f"{keyword} is set by the N-CREATE and may not be changed", keyword
            )
    _check_values(modifications)


def check_final(attributes: Mapping[str, Any]) -> None:
    """Refuse to end a step (COMPLETED or DISCONTINUED) that lacks what the end requires."""
    for keyword in REQUIRED_WHEN_ENDED:
        if not attribute_values(attributes, keyword):  # absent or empty: a value is required now
            raise RequiredValueMissingError(
                f"{keyword} must have a value when the step is COMPLETED or DISCONTINUED", keyword
            )


def merged_attributes(stored: Mapping[str, Any], modifications: Mapping[str, Any]) -> JsonObject:
    """An N-SET replaces each attribute it names, a sequence with all its items.

    The JSON is Unicode whatever character set each request used, so no request's Specific
    Character Set is kept (PS3.4 F.7.2.2.3 lets the SCP convert).
    """
    merged = {**stored, **modifications}
    merged.pop(SPECIFIC_CHARACTER_SET, None)
    return dict(sorted(merged.items()))
