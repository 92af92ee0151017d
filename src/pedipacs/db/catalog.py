"""Which DICOM attributes the index can match and return, at which level, in which column.

The VR of each attribute comes from pydicom's data dictionary (the standard's PS3.6), so only
the mapping to our columns is written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from pedipacs.db.tables import Instance, Patient, Series, Study
from pedipacs.model.levels import QueryLevel


class ValueKind(StrEnum):
    TEXT = "TEXT"  # exact, case-sensitive (LO, SH, CS, ...)
    PERSON_NAME = "PERSON_NAME"  # case-insensitive on the search column
    UID = "UID"
    DATE = "DATE"
    TIME = "TIME"
    INTEGER = "INTEGER"
    MULTI_VALUED = "MULTI_VALUED"  # backslash-joined set such as ModalitiesInStudy


@dataclass(frozen=True, slots=True)
class Attribute:
    keyword: str
    level: QueryLevel
    column: Any  # InstrumentedAttribute
    kind: ValueKind
    search_column: Any = None  # for PN: the normalised column matching compares
    vr: str = ""


def _kind_for(keyword: str) -> ValueKind:
    vr = dictionary_VR(tag_for_keyword(keyword) or 0)
    return {
        "PN": ValueKind.PERSON_NAME,
        "UI": ValueKind.UID,
        "DA": ValueKind.DATE,
        "TM": ValueKind.TIME,
        "IS": ValueKind.INTEGER,
        "US": ValueKind.INTEGER,
    }.get(vr, ValueKind.TEXT)


def _attribute(
    keyword: str,
    level: QueryLevel,
    column: Any,
    search_column: Any = None,
    kind: ValueKind | None = None,
) -> Attribute:
    vr = dictionary_VR(tag_for_keyword(keyword) or 0)
    return Attribute(keyword, level, column, kind or _kind_for(keyword), search_column, vr)


P, ST, SE, IM = QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE

ATTRIBUTES: dict[str, Attribute] = {
    a.keyword: a
    for a in (
        _attribute("PatientID", P, Patient.patient_id),
        _attribute("IssuerOfPatientID", P, Patient.issuer_of_patient_id),
        _attribute("PatientName", P, Patient.patient_name, Patient.patient_name_search),
        _attribute("PatientBirthDate", P, Patient.patient_birth_date),
        _attribute("PatientBirthTime", P, Patient.patient_birth_time),
        _attribute("PatientSex", P, Patient.patient_sex),
        _attribute("NumberOfPatientRelatedStudies", P, Patient.number_of_patient_related_studies),
        _attribute("NumberOfPatientRelatedSeries", P, Patient.number_of_patient_related_series),
        _attribute(
            "NumberOfPatientRelatedInstances", P, Patient.number_of_patient_related_instances
        ),
        _attribute("StudyInstanceUID", ST, Study.study_instance_uid),
        _attribute("StudyDate", ST, Study.study_date),
        _attribute("StudyTime", ST, Study.study_time),
        _attribute("AccessionNumber", ST, Study.accession_number),
        _attribute("StudyID", ST, Study.study_id),
        _attribute("StudyDescription", ST, Study.study_description),
        _attribute(
            "ReferringPhysicianName",
            ST,
            Study.referring_physician_name,
            Study.referring_physician_name_search,
        ),
        _attribute("PatientAge", ST, Study.patient_age),
        _attribute("PatientSize", ST, Study.patient_size),
        _attribute("PatientWeight", ST, Study.patient_weight),
        _attribute("ModalitiesInStudy", ST, Study.modalities_in_study, kind=ValueKind.MULTI_VALUED),
        _attribute(
            "SOPClassesInStudy", ST, Study.sop_classes_in_study, kind=ValueKind.MULTI_VALUED
        ),
        _attribute("NumberOfStudyRelatedSeries", ST, Study.number_of_study_related_series),
        _attribute("NumberOfStudyRelatedInstances", ST, Study.number_of_study_related_instances),
        _attribute("SeriesInstanceUID", SE, Series.series_instance_uid),
        _attribute("Modality", SE, Series.modality),
        _attribute("SeriesNumber", SE, Series.series_number),
        _attribute("SeriesDescription", SE, Series.series_description),
        _attribute("SeriesDate", SE, Series.series_date),
        _attribute("SeriesTime", SE, Series.series_time),
        _attribute("BodyPartExamined", SE, Series.body_part_examined),
        _attribute("Laterality", SE, Series.laterality),
        _attribute("ProtocolName", SE, Series.protocol_name),
        _attribute("StationName", SE, Series.station_name),
        _attribute("Manufacturer", SE, Series.manufacturer),
        _attribute("InstitutionName", SE, Series.institution_name),
        _attribute(
            "PerformedProcedureStepStartDate", SE, Series.performed_procedure_step_start_date
        ),
        _attribute(
            "PerformedProcedureStepStartTime", SE, Series.performed_procedure_step_start_time
        ),
        _attribute("NumberOfSeriesRelatedInstances", SE, Series.number_of_series_related_instances),
        _attribute("SOPInstanceUID", IM, Instance.sop_instance_uid),
        _attribute("SOPClassUID", IM, Instance.sop_class_uid),
        _attribute("InstanceNumber", IM, Instance.instance_number),
        _attribute("ContentDate", IM, Instance.content_date),
        _attribute("ContentTime", IM, Instance.content_time),
        _attribute("AcquisitionNumber", IM, Instance.acquisition_number),
        _attribute("Rows", IM, Instance.rows),
        _attribute("Columns", IM, Instance.columns),
        _attribute("NumberOfFrames", IM, Instance.number_of_frames),
        _attribute("AvailableTransferSyntaxUID", IM, Instance.transfer_syntax_uid),
    )
}

LEVEL_TABLES: dict[QueryLevel, Any] = {P: Patient, ST: Study, SE: Series, IM: Instance}


def attribute(keyword: str) -> Attribute | None:
    return ATTRIBUTES.get(keyword)
