"""Read a DICOM object's header only and pick out what the index needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import data_element_generator
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pedipacs.dicom.part10 import dataset_offset
from pedipacs.errors import InvalidInput, MissingAttributeError, NotDicomError, PedipacsError
from pedipacs.model.identifiers import validated_uid
from pedipacs.model.values import date_from_da, time_from_tm


@dataclass(frozen=True, slots=True)
class InstanceHeader:
    """The attributes of one object that the index keeps."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None
    patient_birth_date: date | None
    patient_birth_time: time | None
    patient_sex: str | None
    patient_age: str | None
    patient_size: str | None
    patient_weight: str | None
    study_date: date | None
    study_time: time | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    referring_physician_name: str | None
    institution_name: str | None
    modality: str | None
    series_number: int | None
    series_description: str | None
    series_date: date | None
    series_time: time | None
    body_part_examined: str | None
    laterality: str | None
    protocol_name: str | None
    station_name: str | None
    manufacturer: str | None
    performed_procedure_step_start_date: date | None
    performed_procedure_step_start_time: time | None
    instance_number: int | None
    content_date: date | None
    content_time: time | None
    acquisition_number: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int | None


def read_dataset_header(data: bytes) -> Dataset:
    """Parse a Part 10 object up to (not including) the pixel data.

    Raises NotDicomError for anything that is not a readable Part 10 object.
    """
    try:
        dataset = dcmread(BytesIO(data), stop_before_pixels=True, defer_size=4096)
        _check_lengths(dataset, len(data), data)
    except NotDicomError:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError) as error:
        raise NotDicomError(f"not a readable DICOM Part 10 object: {error}") from error
    except Exception as error:  # pydicom raises many types on garbage; none may pass as success
        raise NotDicomError(f"not a readable DICOM Part 10 object: {error}") from error
    return dataset


UNDEFINED_LENGTH = 0xFFFFFFFF


def _check_lengths(dataset: Dataset, size: int, data: bytes) -> None:
    """pydicom trusts declared lengths of values it defers: walk the top-level elements and
    refuse any whose value would run past the end of the object (truncated, or not DICOM)."""
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        return
    uid = UID(str(syntax))
    if uid == DeflatedExplicitVRLittleEndian:
        return  # the deflated stream was inflated and parsed whole by dcmread already
    stream = BytesIO(data)
    stream.seek(dataset_offset(data))
    elements = data_element_generator(
        stream, uid.is_implicit_VR, uid.is_little_endian, defer_size=1
    )
    for raw in elements:
        value_tell: int = getattr(raw, "value_tell", 0)
        length: int = getattr(raw, "length", 0)
        if length != UNDEFINED_LENGTH and value_tell + length > size:
            raise NotDicomError(
                f"element {raw.tag} claims {length} bytes at offset {value_tell}, past "
                f"the end of the {size} byte object (truncated or not DICOM)"
            )


def header_from_dataset(dataset: Dataset) -> InstanceHeader:
    """Validate the identifying attributes and build the index record."""
    try:
        return _header(dataset)
    except PedipacsError:
        raise
    except Exception as error:  # a value pydicom cannot decode: the header is garbled
        raise NotDicomError(f"unreadable attribute value: {error}") from error


def _header(dataset: Dataset) -> InstanceHeader:
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        raise NotDicomError("the File Meta Information has no Transfer Syntax UID")
    sop_instance_uid = validated_uid(_text(dataset, "SOPInstanceUID"), "SOPInstanceUID")
    meta_instance = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "").strip("\x00 ")
    if meta_instance and meta_instance != sop_instance_uid:
        raise InvalidInput(
            f"MediaStorageSOPInstanceUID {meta_instance} differs from SOPInstanceUID "
            f"{sop_instance_uid}"
        )
    return InstanceHeader(
        sop_class_uid=validated_uid(_text(dataset, "SOPClassUID"), "SOPClassUID"),
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=validated_uid(transfer_syntax, "TransferSyntaxUID"),
        study_instance_uid=validated_uid(_text(dataset, "StudyInstanceUID"), "StudyInstanceUID"),
        series_instance_uid=validated_uid(_text(dataset, "SeriesInstanceUID"), "SeriesInstanceUID"),
        patient_id=_text(dataset, "PatientID") or "",
        issuer_of_patient_id=_text(dataset, "IssuerOfPatientID") or "",
        patient_name=_text(dataset, "PatientName"),
        patient_birth_date=date_from_da(_text(dataset, "PatientBirthDate")),
        patient_birth_time=time_from_tm(_text(dataset, "PatientBirthTime")),
        patient_sex=_text(dataset, "PatientSex"),
        patient_age=_text(dataset, "PatientAge"),
        patient_size=_text(dataset, "PatientSize"),
        patient_weight=_text(dataset, "PatientWeight"),
        study_date=date_from_da(_text(dataset, "StudyDate")),
        study_time=time_from_tm(_text(dataset, "StudyTime")),
        accession_number=_text(dataset, "AccessionNumber"),
        study_id=_text(dataset, "StudyID"),
        study_description=_text(dataset, "StudyDescription"),
        referring_physician_name=_text(dataset, "ReferringPhysicianName"),
        institution_name=_text(dataset, "InstitutionName"),
        modality=_text(dataset, "Modality"),
        series_number=_integer(dataset, "SeriesNumber"),
        series_description=_text(dataset, "SeriesDescription"),
        series_date=date_from_da(_text(dataset, "SeriesDate")),
        series_time=time_from_tm(_text(dataset, "SeriesTime")),
        body_part_examined=_text(dataset, "BodyPartExamined"),
        laterality=_text(dataset, "Laterality"),
        protocol_name=_text(dataset, "ProtocolName"),
        station_name=_text(dataset, "StationName"),
        manufacturer=_text(dataset, "Manufacturer"),
        performed_procedure_step_start_date=date_from_da(
            _text(dataset, "PerformedProcedureStepStartDate")
        ),
        performed_procedure_step_start_time=time_from_tm(
            _text(dataset, "PerformedProcedureStepStartTime")
        ),
        instance_number=_integer(dataset, "InstanceNumber"),
        content_date=date_from_da(_text(dataset, "ContentDate")),
        content_time=time_from_tm(_text(dataset, "ContentTime")),
        acquisition_number=_integer(dataset, "AcquisitionNumber"),
        rows=_integer(dataset, "Rows"),
        columns=_integer(dataset, "Columns"),
        number_of_frames=_integer(dataset, "NumberOfFrames"),
    )


def require(header_value: str | None, keyword: str) -> str:
    if not header_value:
        raise MissingAttributeError(f"{keyword} is missing or empty")
    return header_value


def _text(dataset: Dataset, keyword: str) -> str | None:
    """The value as one string (multi-values joined by backslash), None if absent or empty."""
    value: Any = dataset.get(keyword)
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join(str(item) for item in value)
    else:
        text = str(value)
    text = text.strip().rstrip("\x00")
    return text or None


def _integer(dataset: Dataset, keyword: str) -> int | None:
    text = _text(dataset, keyword)
    if text is None:
        return None
    try:
        return int(float(text.split("\\")[0]))
    except ValueError:
        return None
