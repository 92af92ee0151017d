"""Read a DICOM object's header only and pick out what the index needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, data_element_generator
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pedipacs.dicom.limits import check_inflated_size
from pedipacs.dicom.part10 import MAGIC, PREAMBLE, is_part10
from pedipacs.errors import (
    DecodedSizeTooLargeError,
    InvalidInput,
    MissingAttributeError,
    NotDicomError,
    PedipacsError,
)
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


_INDEXED_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "InstitutionName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "Laterality",
    "ProtocolName",
    "StationName",
    "Manufacturer",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "InstanceNumber",
    "ContentDate",
    "ContentTime",
    "AcquisitionNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
)
SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
_TAG: dict[str, BaseTag] = {k: BaseTag(tag_for_keyword(k) or 0) for k in _INDEXED_KEYWORDS}
_VR: dict[str, str] = {k: str(dictionary_VR(tag)) for k, tag in _TAG.items()}

# Text VRs whose bytes follow the Specific Character Set, with their component delimiters.
_DELIMITERS: dict[str, set[int]] = {
    "PN": {0x5C, 0x5E, 0x3D},
    "LO": {0x5C},
    "SH": {0x5C},
    "LT": set(),
    "ST": set(),
    "UT": set(),
    "UC": {0x5C},
}
_TEXT_VRS = frozenset(_DELIMITERS)


def read_dataset_header(data: bytes) -> Dataset:
    """Parse the File Meta and the attributes the index needs, in one pass over the object.

    Every top-level element is walked (values not needed are skipped, not read), so an
    element claiming more bytes than the object holds is caught here. Raises NotDicomError for
    anything that is not a readable Part 10 object, DecodedSizeTooLargeError for a deflated
    dataset that would inflate past the limits of dicom.limits.
    """
    try:
        return _read_header(data)
    except (NotDicomError, DecodedSizeTooLargeError):
        raise
    except Exception as error:  # pydicom raises many types on garbage; none may pass as success
        raise NotDicomError(f"not a readable DICOM Part 10 object: {error}") from error


UNDEFINED_LENGTH = 0xFFFFFFFF
# Values longer than this are skipped while walking; every attribute we index is shorter.
MAX_VALUE_READ = 4096


def _read_header(data: bytes) -> Dataset:
    if not is_part10(data):
        raise NotDicomError("no DICOM Part 10 preamble and prefix")
    stream = BytesIO(data)
    stream.seek(len(PREAMBLE) + len(MAGIC))
    meta = _read_file_meta_info(stream)
    syntax = UID(str(meta.get("TransferSyntaxUID", "") or ""))
    if not syntax:
        raise NotDicomError("the File Meta Information has no Transfer Syntax UID")
    if syntax == DeflatedExplicitVRLittleEndian:
        # The dataset is a deflate stream: let pydicom inflate and parse it whole, once it is
        # known not to inflate past the limit (a deflate bomb).
        check_inflated_size(BytesIO(data))
        return dcmread(BytesIO(data), stop_before_pixels=True, defer_size=MAX_VALUE_READ)
    size = len(data)
    kept: dict[BaseTag, DataElement | RawDataElement] = {}
    elements = data_element_generator(
        stream, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=MAX_VALUE_READ
    )
    for raw in elements:
        value_tell: int = getattr(raw, "value_tell", 0)
        length: int = getattr(raw, "length", 0)
        if length != UNDEFINED_LENGTH and value_tell + length > size:
            raise NotDicomError(
                f"element {raw.tag} claims {length} bytes at offset {value_tell}, past "
                f"the end of the {size} byte object (truncated or not DICOM)"
            )
        # Every element is kept (large values deferred, not read): the index takes the wanted
        # ones, and the metadata cache of WADO-RS encodes them all.
        kept[raw.tag] = raw
    dataset = Dataset(kept)
    dataset.file_meta = meta
    dataset.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian, None)
    return dataset


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
    """The value as one string (multi-values joined by backslash), None if absent or empty.

    Raw values are decoded directly: converting each element through pydicom's value classes
    (validation, MultiValue, PersonName) costs more than everything else in the header read.
    """
    item = dataset.get_item(_TAG[keyword])
    if item is None:
        return None
    if isinstance(item, RawDataElement):
        text = _decode_raw(dataset, keyword, item)
    else:
        value: Any = item.value
        if isinstance(value, MultiValue | list | tuple):
            text = "\\".join(str(entry) for entry in value)
        else:
            text = "" if value is None else str(value)
    text = text.strip().rstrip("\x00").strip()
    return text or None


def _decode_raw(dataset: Dataset, keyword: str, raw: RawDataElement) -> str:
    value = raw.value
    if not value:
        return ""
    vr = raw.VR or _VR[keyword]
    if vr in ("US", "UL", "SS", "SL"):
        return str(_binary_integer(dataset, vr, value))
    if vr in _TEXT_VRS:
        return decode_bytes(value, _encodings(dataset), _DELIMITERS[vr])
    return value.decode("ascii", errors="replace")


def _binary_integer(dataset: Dataset, vr: str, value: bytes) -> int:
    width = 2 if vr in ("US", "SS") else 4
    is_little = dataset.original_encoding[1] is not False
    return int.from_bytes(
        value[:width], "little" if is_little else "big", signed=vr in ("SS", "SL")
    )


def _encodings(dataset: Dataset) -> list[str]:
    raw = dataset.get_item(SPECIFIC_CHARACTER_SET)
    if raw is None:
        return ["iso8859"]
    value = raw.value if isinstance(raw, RawDataElement) else None
    if value is None:
        return convert_encodings(dataset.get("SpecificCharacterSet"))
    terms = [term.strip() for term in value.decode("ascii", errors="replace").split("\\")]
    return convert_encodings(terms or None)


def _integer(dataset: Dataset, keyword: str) -> int | None:
    text = _text(dataset, keyword)
    if text is None:
        return None
    try:
        return int(float(text.split("\\")[0]))
    except ValueError:
        return None
