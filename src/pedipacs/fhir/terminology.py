"""The code systems, identifier systems and status maps the FHIR door speaks, written once for
the resources it renders (`resources.py`) and the searches it parses (`search_params.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import quote, unquote

from pedipacs.model.reports import ReportStatus
from pedipacs.model.ris import OrderStatus

S = TypeVar("S")

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service sections
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RFC_3986 = "urn:ietf:rfc:3986"
DICOM_UID_SYSTEM = "urn:dicom:uid"
OID_PREFIX = "urn:oid:"
ENDPOINT_CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

# The issuer of a patient ID, as an identifier system: `urn:pedipacs:issuer:<issuer>`, the
# issuer percent-encoded; an issuer that is a URI already (`urn:oid:...`, `http...`) is used
# as it is. A patient ID without an issuer has no system.
ISSUER_PREFIX = "urn:pedipacs:issuer:"
_URI_SCHEMES = ("urn:", "http://", "https://")

# DICOM Coding Scheme Designators (PS3.16 8.1) with a FHIR system URI; others are local.
CODING_SCHEMES = {"LN": LOINC, "SCT": SNOMED, "DCM": DCM, "RADLEX": "http://www.radlex.org"}


def system_from_issuer(issuer: str) -> str | None:
    """
    >>> system_from_issuer("CHILDRENS")
    'urn:pedipacs:issuer:CHILDRENS'
    >>> system_from_issuer("St Mary's")
    'urn:pedipacs:issuer:St%20Mary%27s'
    >>> system_from_issuer("urn:oid:1.2.3"), system_from_issuer("")
    ('urn:oid:1.2.3', None)
    """
    if not issuer:
        return None
    if issuer.lower().startswith(_URI_SCHEMES):
        return issuer
    return ISSUER_PREFIX + quote(issuer, safe="")


def issuer_from_system(system: str) -> str:
    """The issuer a patient identifier system names (the inverse of `system_from_issuer`).

    >>> issuer_from_system("urn:pedipacs:issuer:St%20Mary%27s"), issuer_from_system("")
    ("St Mary's", '')
    """
    if system.startswith(ISSUER_PREFIX):
        return unquote(system[len(ISSUER_PREFIX) :])
    return system


# ServiceRequest.status: the order stays active until its report is signed (the request
# includes the reading); stopped by the hospital or cancelled, it is revoked.
REQUEST_STATUS = {
    OrderStatus.SCHEDULED: "active",
    OrderStatus.ARRIVED: "active",
    OrderStatus.IN_PROGRESS: "active",
    OrderStatus.COMPLETED: "active",
    OrderStatus.REPORTED: "completed",
    OrderStatus.DISCONTINUED: "revoked",
    OrderStatus.CANCELLED: "revoked",
}
REQUEST_STATUSES = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                    "unknown")  # fmt: skip

# DiagnosticReport.status: pedipacs's released statuses carry the same words.
REPORT_STATUS = {
    ReportStatus.PRELIMINARY: "preliminary",
    ReportStatus.FINAL: "final",
    ReportStatus.AMENDED: "amended",
}
REPORT_STATUSES = ("registered", "partial", "preliminary", "final", "amended", "corrected",
                   "appended", "cancelled", "entered-in-error", "unknown")  # fmt: skip

# Patient.gender from DICOM Patient's Sex.
GENDER = {"M": "male", "F": "female", "O": "other"}
GENDERS = ("male", "female", "other", "unknown")


def statuses_named(code: str, mapping: Mapping[S, str]) -> tuple[S, ...]:
    """
    >>> statuses_named("completed", REQUEST_STATUS)
    (<OrderStatus.REPORTED: 'reported'>,)
    """
    return tuple(status for status, name in mapping.items() if name == code)


def person_display(name: str | None) -> str | None:
    """A DICOM PN (`FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`) as people write it.

    >>> person_display("OKAFOR^ADA"), person_display("REED^JO^^DR"), person_display("")
    ('ADA OKAFOR', 'DR JO REED', None)
    """
    if not name:
        return None
    family, given, middle, prefix, suffix = ([*name.split("=")[0].split("^"), "", "", "", ""])[:5]
    words = [prefix, given, middle, family, suffix]
    return " ".join(word.strip() for word in words if word.strip()) or None
