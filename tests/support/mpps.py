"""MPPS requests as a modality sends them (PS3.4 Table F.7.2-1): the N-CREATE attribute list of
a step started from a worklist item, and the N-SET modification lists that end it."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def in_progress(
    *,
    study_instance_uid: str,
    accession_number: str = "",
    requested_procedure_id: str = "",
    step_id: str = "",
    patient_id: str = "MRN2001",
    patient_name: str = "NGUYEN^LAN",
    modality: str = "US",
    station: str = "US_ED_1",
) -> Dataset:
    """The N-CREATE of a step started on `station` (empty IDs: an unscheduled exam)."""
    item = Dataset()
    item.StudyInstanceUID = study_instance_uid
    item.AccessionNumber = accession_number
    item.RequestedProcedureID = requested_procedure_id
    item.ScheduledProcedureStepID = step_id
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepDescription = ""
    item.ReferencedStudySequence = []
    item.ScheduledProtocolCodeSequence = []
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ScheduledStepAttributesSequence = [item]
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS-1"
    ds.PerformedStationAETitle = station
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20261125"
    ds.PerformedProcedureStepStartTime = "093512"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = ""
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = modality
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def ended(status: str = "COMPLETED", *, series: int = 1, images: int = 2) -> Dataset:
    """The N-SET that ends a step, with the series (and images) it made."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261125"
    ds.PerformedProcedureStepEndTime = "094210"
    ds.PerformedSeriesSequence = [_series(images) for _ in range(series)]
    return ds


def _series(images: int) -> Dataset:
    series = Dataset()
    series.PerformingPhysicianName = "BAKER^SAM"
    series.ProtocolName = "ABDOMEN"
    series.OperatorsName = "TECH^ONE"
    series.SeriesInstanceUID = generate_uid()
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedImageSequence = [_image() for _ in range(images)]
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    return series


def _image() -> Dataset:
    image = Dataset()
    image.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    image.ReferencedSOPInstanceUID = generate_uid()
    return image


def as_json(dataset: Dataset) -> dict[str, Any]:
    """What the DIMSE door hands the service."""
    return dict(dataset.to_json_dict())
