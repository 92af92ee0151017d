"""A report PDF wrapped as an Encapsulated PDF Storage object: attributes, the PDF's bytes,
determinism and IOD conformance checked by dicom3tools."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileDataset

from pedipacs.dicom.encapsulated_pdf import (
    EncapsulatedPdfHeader,
    Verification,
    encapsulated_pdf,
)
from pedipacs.errors import InvalidInput, InvalidUidError

# Not a drawn page, but the byte layout of a PDF: the wrapper never looks inside.
ODD_PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
EVEN_PDF = ODD_PDF + b"\n"
CONTENT_AT = datetime(2026, 3, 14, 17, 45, 12, tzinfo=timezone(timedelta(hours=1)))


def a_header(**changes: object) -> EncapsulatedPdfHeader:
    header = EncapsulatedPdfHeader(
        patient_id="MRN0042",
        issuer_of_patient_id="CHILDRENS",
        patient_name="ŁUKASZ^Zoë",
        patient_birth_date=date(2025, 12, 20),
        patient_sex="F",
        study_instance_uid="1.2.826.0.1.3680043.8.498.77",
        accession_number="RAD2026031401",
        study_date=date(2026, 3, 14),
        study_time=time(9, 30, 5),
        referring_physician_name="OKORO^CHIDI",
        series_instance_uid="1.2.826.0.1.3680043.8.498.78",
        sop_instance_uid="1.2.826.0.1.3680043.8.498.79",
        instance_number=2,
        content_datetime=CONTENT_AT,
        document_title="Radiology report: Chest X-ray, one view",
        verification=Verification(is_signed=True, verifying_observer_name="MARTIN^CLAIRE"),
    )
    return replace(header, **changes)  # type: ignore[arg-type]


def read(data: bytes) -> FileDataset:
    return pydicom.dcmread(BytesIO(data))


def embedded_pdf(dataset: FileDataset) -> bytes:
    return bytes(dataset.EncapsulatedDocument)[: dataset.EncapsulatedDocumentLength]


def dciodvfy_errors(path: Path) -> list[str]:
    """The Error lines dicom3tools reports for one file; warnings are allowed. (The same
    check as tests/unit/demo/test_generator.py, which keeps it to itself.)"""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


def test_object_is_an_encapsulated_pdf_in_the_given_study_and_series() -> None:
    dataset = read(encapsulated_pdf(ODD_PDF, a_header()))

    meta = dataset.file_meta
    assert meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert meta.MediaStorageSOPInstanceUID == "1.2.826.0.1.3680043.8.498.79"
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert meta.ImplementationClassUID
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert dataset.SOPInstanceUID == "1.2.826.0.1.3680043.8.498.79"
    assert dataset.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.77"
    assert dataset.SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.78"
    assert (dataset.Modality, dataset.SeriesNumber, dataset.InstanceNumber) == ("DOC", 9901, 2)
    assert (dataset.PatientID, dataset.IssuerOfPatientID) == ("MRN0042", "CHILDRENS")
    assert (dataset.PatientBirthDate, dataset.PatientSex) == ("20251220", "F")
    assert (dataset.StudyDate, dataset.StudyTime) == ("20260314", "093005")
    assert dataset.AccessionNumber == "RAD2026031401"
    assert dataset.ReferringPhysicianName == "OKORO^CHIDI"
    assert (dataset.Manufacturer, dataset.ConversionType) == ("pedipacs", "WSD")
    assert "PixelData" not in dataset


def test_document_attributes_and_verification() -> None:
    dataset = read(encapsulated_pdf(ODD_PDF, a_header()))

    assert dataset.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert dataset.DocumentTitle == "Radiology report: Chest X-ray, one view"
    (concept,) = dataset.ConceptNameCodeSequence
    assert (concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning) == (
        "18748-4",
        "LN",
        "Diagnostic imaging study",
    )
    assert (dataset.BurnedInAnnotation, dataset.RecognizableVisualFeatures) == ("YES", "NO")
    # Local times of the content's own zone, which Timezone Offset From UTC names.
    assert (dataset.ContentDate, dataset.ContentTime) == ("20260314", "174512")
    assert dataset.AcquisitionDateTime == "20260314174512"
    assert dataset.TimezoneOffsetFromUTC == "+0100"
    assert dataset.VerificationFlag == "VERIFIED"
    (observer,) = dataset.VerifyingObserverSequence
    assert observer.VerifyingObserverName == "MARTIN^CLAIRE"
    assert observer.VerificationDateTime == "20260314174512"


def test_unsigned_document_is_unverified_without_observer() -> None:
    header = a_header(verification=Verification(is_signed=False, verifying_observer_name="X^Y"))

    dataset = read(encapsulated_pdf(ODD_PDF, header))

    assert dataset.VerificationFlag == "UNVERIFIED"
    assert "VerifyingObserverSequence" not in dataset


@pytest.mark.parametrize("pdf", [ODD_PDF, EVEN_PDF], ids=["odd length", "even length"])
def test_embedded_bytes_are_the_pdf_padded_to_even_length(pdf: bytes) -> None:
    dataset = read(encapsulated_pdf(pdf, a_header()))

    stored = bytes(dataset.EncapsulatedDocument)
    assert len(stored) % 2 == 0
    assert len(stored) - len(pdf) == len(pdf) % 2
    assert dataset.EncapsulatedDocumentLength == len(pdf)
    assert embedded_pdf(dataset) == pdf


def test_non_ascii_names_round_trip_as_utf8() -> None:
    data = encapsulated_pdf(ODD_PDF, a_header(referring_physician_name="Παπαδόπουλος^Νίκος"))

    dataset = read(data)

    assert dataset.SpecificCharacterSet == "ISO_IR 192"
    assert dataset.PatientName == "ŁUKASZ^Zoë"
    assert dataset.ReferringPhysicianName == "Παπαδόπουλος^Νίκος"
    assert "ŁUKASZ^Zoë".encode() in data


def test_same_inputs_give_the_same_bytes() -> None:
    first = encapsulated_pdf(ODD_PDF, a_header())

    assert encapsulated_pdf(ODD_PDF, a_header()) == first
    assert encapsulated_pdf(ODD_PDF, a_header(instance_number=3)) != first


def test_empty_type_2_values_are_present_and_empty() -> None:
    header = a_header(
        issuer_of_patient_id=None,
        patient_name=None,
        patient_birth_date=None,
        patient_sex=None,
        accession_number=None,
        study_date=None,
        study_time=None,
        referring_physician_name=None,
    )

    dataset = read(encapsulated_pdf(ODD_PDF, header))

    for keyword in (
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
    ):
        assert keyword in dataset, keyword
        assert not dataset[keyword].value, keyword
    assert "IssuerOfPatientID" not in dataset


@pytest.mark.parametrize(
    "header",
    [
        a_header(verification=Verification(is_signed=False)),
        a_header(patient_name=None, patient_birth_date=None, study_date=None, study_time=None),
    ],
    ids=["unsigned", "sparse"],
)
def test_written_file_passes_dciodvfy_without_errors(
    header: EncapsulatedPdfHeader, tmp_path: Path
) -> None:
    path = tmp_path / "report.dcm"
    path.write_bytes(encapsulated_pdf(ODD_PDF, header))

    # dciodvfy warns that the Study ID a DICOMDIR would need is empty (we do not know the
    # images' Study ID), and, when signed, that the Verifying Observer Sequence extends the IOD.
    assert dciodvfy_errors(path) == []


def test_signed_file_passes_dciodvfy_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "report.dcm"
    path.write_bytes(encapsulated_pdf(EVEN_PDF, a_header()))

    assert dciodvfy_errors(path) == []


def test_refuses_what_is_not_a_pdf() -> None:
    with pytest.raises(InvalidInput, match="not a PDF"):
        encapsulated_pdf(b"<html>report</html>", a_header())


def test_refuses_a_naive_content_datetime() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        encapsulated_pdf(ODD_PDF, a_header(content_datetime=datetime(2026, 3, 14, 17, 45)))


def test_refuses_an_invalid_uid() -> None:
    with pytest.raises(InvalidUidError, match="SeriesInstanceUID"):
        encapsulated_pdf(ODD_PDF, a_header(series_instance_uid="1.02.3"))


def test_utc_content_is_written_with_a_zero_offset() -> None:
    dataset = read(
        encapsulated_pdf(ODD_PDF, a_header(content_datetime=datetime(2026, 1, 1, tzinfo=UTC)))
    )

    assert (dataset.ContentDate, dataset.ContentTime) == ("20260101", "000000")
    assert dataset.TimezoneOffsetFromUTC == "+0000"
