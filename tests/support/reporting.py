"""Exams ready to be reported, made through the real services: a patient registered, an order
placed (with its priority, patient class and point of care), images of it stored through the
ingest service (pydicom's CT_small, given the order's patient, accession and study UID)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from io import BytesIO

from pydicom import dcmread
from pydicom.uid import generate_uid

from pedipacs.model.origin import Origin
from pedipacs.model.ris import PatientIdentity, PatientRegistration, Priority
from pedipacs.node import Node
from support.files import PYDICOM_TEST_FILES
from support.worklist import us_abdomen

HIS = Origin.cli("his")
MODALITY = Origin.dimse("US_ED_1", "PEDIPACS", "127.0.0.1")
RADIOLOGIST = Origin.http("dr.reed", "10.0.0.7")
COLLEAGUE = Origin.http("dr.osei", "10.0.0.8")
ISSUER = "CHILDRENS"
UID_ROOT = "1.2.826.0.1.3680043.10.6"

FINDINGS_TEXT = {
    "clinical_information": "Right iliac fossa pain, fever for two days.",
    "technique": "Graded-compression ultrasound.",
    "comparison": "None.",
    "findings": "Non-compressible appendix, 9 mm, with periappendiceal fat stranding.",
    "impression": "Acute appendicitis.",
}


def child(
    number: int, *, name: str = "NGUYEN^LAN", birth_date: date = date(2019, 5, 20)
) -> PatientRegistration:
    return PatientRegistration(
        identifiers=(PatientIdentity(f"MRN6{number:03d}", ISSUER, "MR"),),
        name=name,
        birth_date=birth_date,
        sex="F",
    )


def image(patient: PatientIdentity, name: str, accession: str, study_uid: str, number: int = 1, *,
          modality: str = "US", body_part: str = "ABDOMEN") -> bytes:  # fmt: skip
    dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.PatientID = patient.identifier
    dataset.IssuerOfPatientID = patient.issuer
    dataset.PatientName = name
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = generate_uid(entropy_srcs=[study_uid, modality])
    dataset.SOPInstanceUID = generate_uid(entropy_srcs=[study_uid, modality, str(number)])
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.AccessionNumber = accession
    dataset.Modality = modality
    dataset.BodyPartExamined = body_part
    buffer = BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def exam(
    node: Node,
    number: int,
    *,
    priority: Priority = Priority.ROUTINE,
    patient_class: str | None = "O",
    location: str | None = None,
    department: str | None = None,
    patient: PatientRegistration | None = None,
    images: int = 1,
    modality: str = "US",
    body_part: str = "ABDOMEN",
) -> str:
    """An exam whose images arrived; its accession number (`E6<number>`)."""
    registration = patient or child(number)
    node.patients.register(registration, HIS)
    accession = f"E6{number:03d}"
    study_uid = f"{UID_ROOT}.{number}"
    order = replace(
        us_abdomen(registration.primary, accession, study_uid),
        priority=priority,
        patient_class=patient_class,
        ordering_department=department,
        patient_location=location,
        referring_physician="OKAFOR^ADA",
        reason="Right iliac fossa pain",
    )
    node.orders.place(order, HIS)
    for n in range(1, images + 1):
        node.ingest.ingest(
            image(registration.primary, registration.name or "", accession, study_uid, n,
                  modality=modality, body_part=body_part),
            MODALITY,
        )  # fmt: skip
    return accession
