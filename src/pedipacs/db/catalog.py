"""Which DICOM attributes the index can match and return, at which level, in which column: one
catalog per information model, because a keyword can mean another column in each (the
Accession Number of a stored study, or of an order on the worklist).

The VR of each attribute comes from pydicom's data dictionary (the standard's PS3.6), so only
the mapping to our columns is written here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from sqlalchemy import case, func

from pedipacs.db.tables import (
    ImagingOrder,
    Instance,
    Patient,
    RequestedProcedure,
    ScheduledStep,
    Series,
    Study,
)
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.ris import OrderStatus, StepStatus


class ValueKind(StrEnum):
    TEXT = "TEXT"  # exact, case-sensitive (LO, SH, CS, ...)
    PERSON_NAME = "PERSON_NAME"  # case-insensitive on the search column
    UID = "UID"
    DATE = "DATE"
    TIME = "TIME"
    INTEGER = "INTEGER"
    MULTI_VALUED = "MULTI_VALUED"  # backslash-joined set such as ModalitiesInStudy
    AGE = "AGE"  # computed from the birth date (column) on the date `age_on`; returned only


@dataclass(frozen=True, slots=True)
class Attribute:
    keyword: str
    level: QueryLevel
    column: Any  # InstrumentedAttribute, or an SQL expression over the level's tables
    kind: ValueKind
    search_column: Any = None  # for PN: the normalised column matching compares
    vr: str = ""
    label: str = ""  # its column's name in a result row: the keyword, unless inside a sequence
    age_on: Any = None  # for AGE: the date the age is given on

    @property
    def is_matchable(self) -> bool:
        return self.kind is not ValueKind.AGE


@dataclass(frozen=True, slots=True)
class ItemSequence:
    """A sequence attribute whose items come from columns: each row of an answer holds at most
    one item (one scheduled step, one procedure code), present when `key` has a value."""

    key: str
    attributes: Mapping[str, Attribute]


@dataclass(frozen=True, slots=True)
class Catalog:
    """What one information model matches and returns: the attributes of an identifier's top
    level, and its sequences, by keyword."""

    attributes: Mapping[str, Attribute]
    sequences: Mapping[str, ItemSequence] = field(default_factory=dict)

    def every_attribute(self) -> Iterator[Attribute]:
        yield from self.attributes.values()
        for sequence in self.sequences.values():
            yield from sequence.attributes.values()


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
    age_on: Any = None,
) -> Attribute:
    vr = dictionary_VR(tag_for_keyword(keyword) or 0)
    kind = kind or _kind_for(keyword)
    return Attribute(keyword, level, column, kind, search_column, vr, keyword, age_on)


def _by_keyword(*attributes: Attribute) -> dict[str, Attribute]:
    return {a.keyword: a for a in attributes}


def _sequences(*sequences: tuple[str, str, dict[str, Attribute]]) -> dict[str, ItemSequence]:
    """Sequences (keyword, key, attributes), their attributes labelled apart from the top
    level's (`item0_Modality`)."""
    return {
        keyword: ItemSequence(
            key, {k: replace(a, label=f"item{n}_{k}") for k, a in attributes.items()}
        )
        for n, (keyword, key, attributes) in enumerate(sequences)
    }


P, ST, SE, IM = QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE

ATTRIBUTES: dict[str, Attribute] = _by_keyword(
    _attribute("PatientID", P, Patient.patient_id),
    _attribute("IssuerOfPatientID", P, Patient.issuer_of_patient_id),
    _attribute("PatientName", P, Patient.patient_name, Patient.patient_name_search),
    _attribute("PatientBirthDate", P, Patient.patient_birth_date),
    _attribute("PatientBirthTime", P, Patient.patient_birth_time),
    _attribute("PatientSex", P, Patient.patient_sex),
    _attribute("NumberOfPatientRelatedStudies", P, Patient.number_of_patient_related_studies),
    _attribute("NumberOfPatientRelatedSeries", P, Patient.number_of_patient_related_series),
    _attribute("NumberOfPatientRelatedInstances", P, Patient.number_of_patient_related_instances),
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
    _attribute("SOPClassesInStudy", ST, Study.sop_classes_in_study, kind=ValueKind.MULTI_VALUED),
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
    _attribute("PerformedProcedureStepStartDate", SE, Series.performed_procedure_step_start_date),
    _attribute("PerformedProcedureStepStartTime", SE, Series.performed_procedure_step_start_time),
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

# -- Modality Worklist (PS3.4 K.6): one answer per scheduled procedure step ----------------------

SPS = QueryLevel.SCHEDULED_PROCEDURE_STEP

# On the worklist: the steps still to be performed, of orders still open. A step that was
# started, completed, discontinued or cancelled is off it; so are all steps of an order that was
# cancelled, discontinued, completed or reported.
WORKLIST_STEP_STATUSES = (StepStatus.SCHEDULED, StepStatus.ARRIVED, StepStatus.READY)
WORKLIST_ORDER_STATUSES = (OrderStatus.SCHEDULED, OrderStatus.ARRIVED, OrderStatus.IN_PROGRESS)

# Requested Procedure Priority (0040,1003) has the defined terms STAT, HIGH, ROUTINE, MEDIUM and
# LOW; an order's HL7 priority ASAP is HIGH.
_PRIORITY = case((ImagingOrder.priority == "ASAP", "HIGH"), else_=ImagingOrder.priority)

WORKLIST_ATTRIBUTES: dict[str, Attribute] = _by_keyword(
    _attribute("PatientName", SPS, Patient.patient_name, Patient.patient_name_search),
    _attribute("PatientID", SPS, Patient.patient_id),
    _attribute("IssuerOfPatientID", SPS, Patient.issuer_of_patient_id),
    _attribute("PatientBirthDate", SPS, Patient.patient_birth_date),
    _attribute("PatientBirthTime", SPS, Patient.patient_birth_time),
    _attribute("PatientSex", SPS, Patient.patient_sex),
    _attribute(
        "PatientAge",
        SPS,
        Patient.patient_birth_date,
        kind=ValueKind.AGE,
        age_on=ScheduledStep.start_date,
    ),
    _attribute("PatientWeight", SPS, ImagingOrder.patient_weight),
    _attribute("AccessionNumber", SPS, ImagingOrder.accession_number),
    _attribute(
        "ReferringPhysicianName",
        SPS,
        ImagingOrder.referring_physician_name,
        ImagingOrder.referring_physician_name_search,
    ),
    _attribute("ReasonForTheRequestedProcedure", SPS, ImagingOrder.reason),
    _attribute("RequestedProcedurePriority", SPS, _PRIORITY),
    _attribute("PlacerOrderNumberImagingServiceRequest", SPS, ImagingOrder.placer_order_number),
    _attribute("FillerOrderNumberImagingServiceRequest", SPS, ImagingOrder.filler_order_number),
    _attribute("RequestedProcedureID", SPS, RequestedProcedure.requested_procedure_id),
    _attribute("RequestedProcedureDescription", SPS, RequestedProcedure.description),
    _attribute("StudyInstanceUID", SPS, RequestedProcedure.study_instance_uid),
)

WORKLIST_SEQUENCES = _sequences(
    (
        "ScheduledProcedureStepSequence",
        "ScheduledProcedureStepID",
        _by_keyword(
            _attribute("ScheduledStationAETitle", SPS, ScheduledStep.station_ae_title),
            _attribute("ScheduledStationName", SPS, ScheduledStep.station_name),
            _attribute("ScheduledProcedureStepStartDate", SPS, ScheduledStep.start_date),
            _attribute("ScheduledProcedureStepStartTime", SPS, ScheduledStep.start_time),
            _attribute("Modality", SPS, ScheduledStep.modality),
            # No normalised column: matched on the upper-cased stored name.
            _attribute(
                "ScheduledPerformingPhysicianName",
                SPS,
                ScheduledStep.performing_physician_name,
                func.upper(ScheduledStep.performing_physician_name),
            ),
            _attribute("ScheduledProcedureStepDescription", SPS, ScheduledStep.description),
            _attribute("ScheduledProcedureStepID", SPS, ScheduledStep.step_id),
            _attribute("ScheduledProcedureStepStatus", SPS, ScheduledStep.status),
        ),
    ),
    (
        "RequestedProcedureCodeSequence",
        "CodeValue",
        _by_keyword(
            _attribute("CodeValue", SPS, RequestedProcedure.code_value),
            _attribute("CodingSchemeDesignator", SPS, RequestedProcedure.coding_scheme),
            _attribute("CodeMeaning", SPS, RequestedProcedure.code_meaning),
        ),
    ),
)

LEVEL_TABLES: dict[QueryLevel, Any] = {
    P: Patient,
    ST: Study,
    SE: Series,
    IM: Instance,
    SPS: ScheduledStep,
}

QUERY_RETRIEVE = Catalog(ATTRIBUTES)
WORKLIST = Catalog(WORKLIST_ATTRIBUTES, WORKLIST_SEQUENCES)

_CATALOGS = {
    InformationModel.PATIENT_ROOT: QUERY_RETRIEVE,
    InformationModel.STUDY_ROOT: QUERY_RETRIEVE,
    InformationModel.MODALITY_WORKLIST: WORKLIST,
}


def catalog_for(model: InformationModel) -> Catalog:
    return _CATALOGS[model]
