"""Clinical records -> FHIR resources, as JSON-ready dicts the models of fhir.resources validate
(`bundle.py`, `routes.py`).

The door speaks FHIR R4 (4.0.1) with the R4B models of fhir.resources: for Patient,
ServiceRequest, ImagingStudy, DiagnosticReport, Endpoint, Observation, Bundle,
OperationOutcome and CapabilityStatement, R4B changed nothing an R4 client reads.

Logical ids: Patient, ServiceRequest and DiagnosticReport carry their row key (a number: a
patient ID, an accession number may hold characters an id may not); ImagingStudy the Study
Instance UID (digits and dots, at most 64: a valid id).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any
from urllib.parse import quote

from pedipacs.fhir.terminology import (
    CODING_SCHEMES,
    DCM,
    DICOM_UID_SYSTEM,
    ENDPOINT_CONNECTION_TYPE,
    GENDER,
    LOINC,
    OBSERVATION_INTERPRETATION,
    OID_PREFIX,
    REPORT_STATUS,
    REQUEST_STATUS,
    RFC_3986,
    SNOMED,
    V2_0074,
    V2_0203,
    person_display,
    system_from_issuer,
)
from pedipacs.model.clinical import (
    ClinicalReport,
    KnownIdentifier,
    OrderRecord,
    PatientRecord,
    PatientReference,
    ProcedureRecord,
    SeriesRecord,
    StudyRecord,
)
from pedipacs.model.reports import ReportStatus

Json = dict[str, Any]
ENDPOINT_ID = "dicomweb"
CRITICAL_ID = "critical-result"
OTHER_MODALITY = "OT"  # a series whose Modality was not given
_EMPTY: tuple[Any, ...] = (None, "", [], {})


@dataclass(frozen=True, slots=True)
class Site:
    """Where the door answers from: the server's root URL (for the DICOMweb endpoint and the
    report PDF) and the hospital's time zone (DICOM dates and times are local, without an
    offset; without a zone, `started` is given to the day)."""

    server: str  # e.g. https://pacs.example.org, no trailing slash
    base: str  # the FHIR base, e.g. https://pacs.example.org/fhir/r4
    time_zone: tzinfo | None = None


def compact(value: Json) -> Json:
    """Without the None, empty strings, lists and dicts FHIR does not allow (False and 0 stay).

    >>> compact({"a": None, "b": [], "c": {"d": ""}, "e": False, "f": [0, None]})
    {'e': False, 'f': [0]}
    """
    kept = _compact(value)
    assert isinstance(kept, dict)
    return kept


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {key: _compact(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in _EMPTY}
    if isinstance(value, list):
        return [item for item in (_compact(item) for item in value) if item not in _EMPTY]
    return value


def _coding(system: str | None, code: str | None, display: str | None = None) -> Json:
    return {"system": system, "code": code, "display": display}


def _identifier_type(code: str) -> Json:
    return {"coding": [_coding(V2_0203, code)]}


def _subject(patient: PatientReference) -> Json:
    return {"reference": f"Patient/{patient.key}", "display": person_display(patient.name)}


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _local(day: date | None, at: time | None, zone: tzinfo | None) -> str | None:
    """A DICOM date and time (local) as a FHIR dateTime: to the day without a time zone.

    >>> from datetime import UTC
    >>> _local(date(2004, 1, 19), time(7, 27, 30), UTC), _local(date(2004, 1, 19), time(7), None)
    ('2004-01-19T07:27:30+00:00', '2004-01-19')
    """
    if day is None:
        return None
    if at is None or zone is None:
        return day.isoformat()
    return datetime.combine(day, at, tzinfo=zone).isoformat()


def _unsigned(number: int | None) -> int | None:
    return number if number is not None and number >= 0 else None


# -- Patient ----------------------------------------------------------------------------------


def human_name(name: str | None) -> Json | None:
    """
    >>> human_name("NGUYEN^LAN^MAI")
    {'use': 'official', 'text': 'LAN MAI NGUYEN', 'family': 'NGUYEN', 'given': ['LAN', 'MAI']}
    """
    if not name:
        return None
    family, given, middle, prefix, suffix = ([*name.split("=")[0].split("^"), "", "", "", ""])[:5]
    return compact(
        {
            "use": "official",
            "text": person_display(name),
            "family": family.strip(),
            "given": [part.strip() for part in (given, middle)],
            "prefix": [prefix.strip()],
            "suffix": [suffix.strip()],
        }
    )


def _patient_identifier(known: KnownIdentifier, is_temporary: bool) -> Json:
    return {
        "use": "temp" if is_temporary else "usual",
        "type": _identifier_type(known.type_code) if known.type_code else None,
        "system": system_from_issuer(known.issuer),
        "value": known.identifier,
    }


def _multiple_birth(record: PatientRecord) -> Json:
    if record.birth_order is not None and record.birth_order > 0:
        return {"multipleBirthInteger": record.birth_order}
    if record.multiple_birth in ("Y", "N"):
        return {"multipleBirthBoolean": record.multiple_birth == "Y"}
    return {}


def patient_resource(record: PatientRecord) -> Json:
    links = [{"other": {"reference": f"Patient/{record.merged_into}"}, "type": "replaced-by"}]
    links = links if record.merged_into is not None else []
    links += [{"other": {"reference": f"Patient/{key}"}, "type": "replaces"}
              for key in record.replaces]  # fmt: skip
    return compact(
        {
            "resourceType": "Patient",
            "id": str(record.key),
            "identifier": [_patient_identifier(i, record.is_temporary) for i in record.identifiers],
            "active": record.merged_into is None,
            "name": [human_name(record.name)],
            "gender": GENDER.get(record.sex or "", "unknown") if record.sex else None,
            "birthDate": record.birth_date.isoformat() if record.birth_date else None,
            **_multiple_birth(record),
            "link": links,
        }
    )


# -- ServiceRequest ---------------------------------------------------------------------------


def _exam_identifiers(
    accession: str | None, placer: str | None = None, filler: str | None = None
) -> list[Json]:
    given = (("ACSN", accession), ("PLAC", placer), ("FILL", filler))
    return [{"type": _identifier_type(kind), "value": value} for kind, value in given if value]


def procedure_code(procedures: tuple[ProcedureRecord, ...]) -> Json | None:
    """The first coded procedure's code, and every procedure's description as text."""
    coded = next((p for p in procedures if p.code_value), None)
    words = [p.description or p.code_meaning or "" for p in procedures]
    coding = []
    if coded is not None:
        system = CODING_SCHEMES.get((coded.coding_scheme or "").upper())
        coding.append(_coding(system, coded.code_value, coded.code_meaning))
    return compact({"coding": coding, "text": "; ".join(w for w in words if w)}) or None


def service_request_resource(record: OrderRecord) -> Json:
    return compact(
        {
            "resourceType": "ServiceRequest",
            "id": str(record.key),
            "identifier": _exam_identifiers(
                record.accession_number, record.placer_order_number, record.filler_order_number
            ),
            "status": REQUEST_STATUS[record.status],
            "intent": "order",
            "category": [{"coding": [_coding(SNOMED, "363679005", "Imaging")]}],
            "priority": str(record.priority).lower(),
            "code": procedure_code(record.procedures),
            "subject": _subject(record.patient),
            "authoredOn": _moment(record.ordered_at),
            "requester": {"display": person_display(record.referring_physician)},
            "reasonCode": [{"text": record.reason}],
        }
    )


# -- ImagingStudy -----------------------------------------------------------------------------


def dicomweb_endpoint(site: Site) -> Json:
    return {
        "resourceType": "Endpoint",
        "id": ENDPOINT_ID,
        "status": "active",
        "connectionType": _coding(ENDPOINT_CONNECTION_TYPE, "dicom-wado-rs"),
        "name": "pedipacs DICOMweb (WADO-RS)",
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": f"{site.server}/dicomweb",
    }


def _series(series: SeriesRecord, site: Site) -> Json:
    return {
        "uid": series.series_instance_uid,
        "number": _unsigned(series.series_number),
        "modality": _coding(DCM, series.modality or OTHER_MODALITY),
        "description": series.series_description,
        "numberOfInstances": series.number_of_instances,
        "bodySite": {"display": series.body_part_examined},
        "started": _local(series.series_date, series.series_time, site.time_zone),
        "instance": [
            {
                "uid": instance.sop_instance_uid,
                "sopClass": _coding(RFC_3986, OID_PREFIX + instance.sop_class_uid),
                "number": _unsigned(instance.instance_number),
            }
            for instance in series.instances
        ],
    }


def imaging_study_resource(record: StudyRecord, site: Site) -> Json:
    uid = record.study_instance_uid
    return compact(
        {
            "resourceType": "ImagingStudy",
            "id": uid,
            "contained": [dicomweb_endpoint(site)],
            "identifier": [
                {"system": DICOM_UID_SYSTEM, "value": OID_PREFIX + uid},
                *_exam_identifiers(record.accession_number),
            ],
            "status": "available",
            "modality": [_coding(DCM, modality) for modality in record.modalities],
            "subject": _subject(record.patient),
            "started": _local(record.study_date, record.study_time, site.time_zone),
            "basedOn": [{"reference": f"ServiceRequest/{record.order_key}"}]
            if record.order_key is not None
            else [],
            "referrer": {"display": person_display(record.referring_physician)},
            "endpoint": [{"reference": f"#{ENDPOINT_ID}"}],
            "numberOfSeries": record.number_of_series,
            "numberOfInstances": record.number_of_instances,
            "description": record.study_description,
            "series": [_series(series, site) for series in record.series],
        }
    )


# -- DiagnosticReport -------------------------------------------------------------------------


def report_text(record: ClinicalReport) -> str:
    """The report as plain text: every section, the critical finding, the addenda, the
    signature."""
    lines = [
        f"Radiology report {record.accession_number} ({record.status})",
        f"Patient: {person_display(record.patient.name) or '-'} ({record.patient.patient_id})",
        f"Procedure: {record.procedure or '-'}",
    ]
    if record.critical_finding:
        lines += ["", f"CRITICAL RESULT: {record.critical_finding}"]
    for title, text in record.sections:
        lines += ["", title, text]
    for addendum in record.addenda:
        lines += ["", f"Addendum by {addendum.author}, {addendum.created_at.isoformat()}",
                  addendum.text]  # fmt: skip
    signer = person_display(record.signed_by_name) or record.signed_by or "-"
    verb = "Signed" if record.status.is_signed else "Signed as preliminary"
    lines += ["", f"{verb} by {signer}, {record.released_at.isoformat()}"]
    return "\n".join(lines) + "\n"


def _critical_observation(record: ClinicalReport) -> Json:
    return {
        "resourceType": "Observation",
        "id": CRITICAL_ID,
        "status": "final" if record.status.is_signed else "preliminary",
        "code": {"text": "Critical result"},
        "subject": _subject(record.patient),
        "issued": _moment(record.released_at),
        "valueString": record.critical_finding,
        "interpretation": [
            {"coding": [_coding(OBSERVATION_INTERPRETATION, "AA", "Critical abnormal")]}
        ],
    }


def conclusion(record: ClinicalReport) -> str | None:
    """The impression, after the critical finding when there is one."""
    if not record.critical_finding:
        return record.impression
    critical = f"CRITICAL: {record.critical_finding}"
    return f"{critical}\n\n{record.impression}" if record.impression else critical


def _presented_forms(record: ClinicalReport, site: Site) -> list[Json]:
    text = report_text(record).encode()
    title = f"Radiology report {record.accession_number}"
    accession = quote(record.accession_number, safe="")
    return [
        {
            "contentType": "text/plain; charset=utf-8",
            "data": base64.b64encode(text).decode("ascii"),
            "size": len(text),
            "hash": base64.b64encode(hashlib.sha1(text).digest()).decode("ascii"),  # noqa: S324
            "title": title,
            "creation": _moment(record.released_at),
        },
        {
            "contentType": "application/pdf",
            "url": f"{site.server}/api/reports/{accession}/pdf",
            "title": f"{title} (PDF)",
            "creation": _moment(record.released_at),
        },
    ]


def diagnostic_report_resource(record: ClinicalReport, site: Site) -> Json:
    has_critical = bool(record.critical_finding)
    return compact(
        {
            "resourceType": "DiagnosticReport",
            "id": str(record.key),
            "contained": [_critical_observation(record)] if has_critical else [],
            "identifier": _exam_identifiers(
                record.accession_number, filler=record.filler_order_number
            ),
            "basedOn": [{"reference": f"ServiceRequest/{record.order_key}"}],
            "status": REPORT_STATUS[ReportStatus(record.status)],
            "category": [{"coding": [_coding(V2_0074, "RAD", "Radiology")]}],
            "code": {
                "coding": [_coding(LOINC, "18748-4", "Diagnostic imaging study")],
                "text": record.procedure,
            },
            "subject": _subject(record.patient),
            "effectiveDateTime": record.study_date.isoformat() if record.study_date else None,
            "issued": _moment(record.released_at),
            "resultsInterpreter": [
                {"display": person_display(record.signed_by_name) or record.signed_by}
            ],
            "result": [{"reference": f"#{CRITICAL_ID}"}] if has_critical else [],
            "imagingStudy": [
                {"reference": f"ImagingStudy/{uid}"} for uid in record.study_instance_uids
            ],
            "conclusion": conclusion(record),
            "presentedForm": _presented_forms(record, site),
        }
    )
