"""A PDF document as an Encapsulated PDF Storage object (PS3.3 A.45.1), so a signed report sits
in its study and any DICOM viewer shows it beside the images.

The bytes are a function of the arguments alone (no generated UID, no clock), so storing the
same report version again yields an identical object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from io import BytesIO

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
)

from pedipacs.errors import InvalidInput
from pedipacs.model.identifiers import validated_uid
from pedipacs.model.values import da_from_date, tm_from_time

ENCAPSULATED_PDF_STORAGE = str(EncapsulatedPDFStorage)
PDF_MIME_TYPE = "application/pdf"
UTF8 = "ISO_IR 192"  # names and titles may hold any script
REPORT_SERIES_NUMBER = 9901  # high, so viewers list the report after the image series
# LOINC's code for the report of an imaging study (what DICOM SR radiology reports use too).
DIAGNOSTIC_IMAGING_STUDY = ("18748-4", "LN", "Diagnostic imaging study")
WORKSTATION = "WSD"  # Conversion Type (PS3.3 C.8.6.1): made on a workstation, not scanned


@dataclass(frozen=True, slots=True)
class Verification:
    """Whether the document was signed (Verification Flag VERIFIED) and by whom (a DICOM PN)."""

    is_signed: bool
    verifying_observer_name: str | None = None


@dataclass(frozen=True, slots=True)
class EncapsulatedPdfHeader:
    """The attributes around the PDF: the patient and study as the archive knows them, the
    report's own series and instance, and when and by whom the content was made."""

    patient_id: str
    issuer_of_patient_id: str | None
    patient_name: str | None  # DICOM PN
    patient_birth_date: date | None
    patient_sex: str | None
    study_instance_uid: str
    accession_number: str | None
    study_date: date | None
    study_time: time | None
    referring_physician_name: str | None  # DICOM PN
    series_instance_uid: str
    sop_instance_uid: str
    instance_number: int
    content_datetime: datetime  # aware; its offset becomes Timezone Offset From UTC
    document_title: str
    verification: Verification
    series_number: int = REPORT_SERIES_NUMBER
    manufacturer: str = "pedipacs"


def encapsulated_pdf(pdf: bytes, header: EncapsulatedPdfHeader) -> bytes:
    """The Part 10 file (Explicit VR Little Endian) of an Encapsulated PDF object holding `pdf`.

    Raises InvalidInput if `pdf` is not a PDF document, if a UID is invalid, or if
    `content_datetime` has no time zone.
    """
    if not pdf.startswith(b"%PDF-"):
        raise InvalidInput("the document to encapsulate is not a PDF (no %PDF- signature)")
    offset = header.content_datetime.utcoffset()
    if offset is None:
        raise InvalidInput("content_datetime must be timezone-aware")
    dataset = Dataset()
    try:
        _sop_common(dataset, header, offset)
        _patient_and_study(dataset, header)
        _series_and_equipment(dataset, header)
        _encapsulated_document(dataset, header, pdf)
    except ValueError as error:  # a value pydicom refuses for its VR
        raise InvalidInput(f"Encapsulated PDF header: {error}") from error
    dataset.file_meta = _file_meta(dataset.SOPInstanceUID)
    buffer = BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _file_meta(sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID  # as dicom/part10.py writes it
    return meta


def _sop_common(dataset: Dataset, header: EncapsulatedPdfHeader, offset: timedelta) -> None:
    dataset.SpecificCharacterSet = UTF8
    dataset.SOPClassUID = EncapsulatedPDFStorage
    dataset.SOPInstanceUID = validated_uid(header.sop_instance_uid, "SOPInstanceUID")
    content = header.content_datetime
    dataset.InstanceCreationDate = da_from_date(content.date())
    dataset.InstanceCreationTime = tm_from_time(content.time())
    # Dates and times below are local to content_datetime's zone; this says which one it is.
    dataset.TimezoneOffsetFromUTC = _offset_text(offset)


def _patient_and_study(dataset: Dataset, header: EncapsulatedPdfHeader) -> None:
    dataset.PatientName = header.patient_name or ""
    dataset.PatientID = header.patient_id
    if header.issuer_of_patient_id:
        dataset.IssuerOfPatientID = header.issuer_of_patient_id
    dataset.PatientBirthDate = da_from_date(header.patient_birth_date)
    dataset.PatientSex = header.patient_sex or ""
    dataset.StudyInstanceUID = validated_uid(header.study_instance_uid, "StudyInstanceUID")
    dataset.StudyDate = da_from_date(header.study_date)
    dataset.StudyTime = tm_from_time(header.study_time)
    dataset.ReferringPhysicianName = header.referring_physician_name or ""
    dataset.StudyID = ""  # Type 2; the images' Study ID is not known here
    dataset.AccessionNumber = header.accession_number or ""


def _series_and_equipment(dataset: Dataset, header: EncapsulatedPdfHeader) -> None:
    dataset.Modality = "DOC"
    dataset.SeriesInstanceUID = validated_uid(header.series_instance_uid, "SeriesInstanceUID")
    dataset.SeriesNumber = header.series_number
    dataset.SeriesDescription = "Radiology report"
    dataset.Manufacturer = header.manufacturer
    dataset.ConversionType = WORKSTATION


def _encapsulated_document(dataset: Dataset, header: EncapsulatedPdfHeader, pdf: bytes) -> None:
    content = header.content_datetime
    dataset.InstanceNumber = header.instance_number
    dataset.ContentDate = da_from_date(content.date())
    dataset.ContentTime = tm_from_time(content.time())
    dataset.AcquisitionDateTime = content.strftime("%Y%m%d%H%M%S")
    dataset.BurnedInAnnotation = "YES"  # the PDF shows the patient's name and identifier
    dataset.RecognizableVisualFeatures = "NO"
    dataset.DocumentTitle = header.document_title
    code_value, scheme, meaning = DIAGNOSTIC_IMAGING_STUDY
    concept = Dataset()
    concept.CodeValue = code_value
    concept.CodingSchemeDesignator = scheme
    concept.CodeMeaning = meaning
    dataset.ConceptNameCodeSequence = Sequence([concept])
    verification = header.verification
    dataset.VerificationFlag = "VERIFIED" if verification.is_signed else "UNVERIFIED"
    if verification.is_signed and verification.verifying_observer_name:
        # Not in this IOD, which has no place for the signer: the SR Document General module's
        # sequence, as a Standard Extended SOP Class may add it (PS3.4 B.1.3).
        dataset.VerifyingObserverSequence = Sequence([_verifying_observer(header)])
    dataset.MIMETypeOfEncapsulatedDocument = PDF_MIME_TYPE
    # OB values have an even length; the length attribute tells a reader where the PDF ends.
    dataset.EncapsulatedDocument = pdf + b"\x00" if len(pdf) % 2 else pdf
    dataset.EncapsulatedDocumentLength = len(pdf)


def _verifying_observer(header: EncapsulatedPdfHeader) -> Dataset:
    """One item as PS3.3 C.17.2 defines it (Type 1 name and time, Type 2 identification and
    organization, left empty)."""
    observer = Dataset()
    observer.VerifyingObserverName = header.verification.verifying_observer_name
    observer.VerificationDateTime = header.content_datetime.strftime("%Y%m%d%H%M%S")
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    observer.VerifyingOrganization = ""
    return observer


def _offset_text(offset: timedelta) -> str:
    """Timezone Offset From UTC (SH), "+HHMM" or "-HHMM".

    >>> _offset_text(timedelta(hours=-5)), _offset_text(timedelta(hours=5, minutes=30))
    ('-0500', '+0530')
    """
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}"
