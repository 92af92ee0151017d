"""Answers carry the patient the archive knows now, not the one a stored file names.

After a newborn's temporary identity is merged into the permanent one, or an identifier is
changed, the stored bytes stay as they came (they are the record of what the modality sent);
every instance and metadata answer is corrected on the way out. The values replaced are kept in
the Original Attributes Sequence (PS3.3 C.12.1.1.9), as a DICOM archive coercing attributes
should, so a receiver can see what the modality wrote.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pedipacs.model.records import PatientDemographics

MODIFYING_SYSTEM = "pedipacs"
REASON = "CORRECT"  # PS3.3 C.12.1.1.9.2: the values were corrected, not coerced to a policy
UTF8 = "ISO_IR 192"

# (tag as DICOM JSON writes it, keyword, VR)
_PATIENT_ELEMENTS = (
    ("00100010", "PatientName", "PN"),
    ("00100020", "PatientID", "LO"),
    ("00100021", "IssuerOfPatientID", "LO"),
    ("00100030", "PatientBirthDate", "DA"),
    ("00100040", "PatientSex", "CS"),
)


def _new_values(patient: PatientDemographics) -> dict[str, str]:
    return {
        "PatientName": patient.patient_name or "",
        "PatientID": patient.patient_id,
        "IssuerOfPatientID": patient.issuer_of_patient_id,
        "PatientBirthDate": patient.birth_date.strftime("%Y%m%d") if patient.birth_date else "",
        "PatientSex": patient.sex or "",
    }


def corrected_instance(data: bytes, patient: PatientDemographics) -> bytes:
    """The Part 10 object `data` with `patient`'s identity, the replaced values recorded."""
    dataset = dcmread(BytesIO(data))
    dataset.decode()  # every text value as str, so a change of character set re-encodes them
    values = _new_values(patient)
    original = Dataset()
    changed = False
    for _, keyword, vr in _PATIENT_ELEMENTS:
        before = dataset.get(keyword)
        if str(before if before is not None else "") == values[keyword]:
            continue
        changed = True
        original.add_new(keyword, vr, before)
        if values[keyword] or keyword in dataset:
            setattr(dataset, keyword, values[keyword])
    if not changed:
        return data
    if not all(value.isascii() for value in values.values()):
        dataset.SpecificCharacterSet = UTF8
    item = Dataset()
    item.ModifiedAttributesSequence = Sequence([original])
    item.AttributeModificationDateTime = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    item.ModifyingSystem = MODIFYING_SYSTEM
    item.ReasonForTheAttributeModification = REASON
    item.SourceOfPreviousValues = ""
    history = list(dataset.get("OriginalAttributesSequence", []))
    dataset.OriginalAttributesSequence = Sequence([*history, item])
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def corrected_metadata(dicom_json: str, patient: PatientDemographics) -> str:
    """DICOM JSON metadata with `patient`'s identity (JSON is Unicode: no character set)."""
    document: dict[str, Any] = json.loads(dicom_json)
    values = _new_values(patient)
    for tag, keyword, vr in _PATIENT_ELEMENTS:
        value = values[keyword]
        if not value:
            if tag in document:
                document[tag] = {"vr": vr}  # present and empty, as the file holds it
            continue
        document[tag] = {"vr": vr, "Value": [{"Alphabetic": value} if vr == "PN" else value]}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
