"""Query information models and their levels: Query/Retrieve (PS3.4 C.6) and the Modality
Worklist (PS3.4 K.6)."""

from __future__ import annotations

from enum import StrEnum


class InformationModel(StrEnum):
    PATIENT_ROOT = "PATIENT_ROOT"
    STUDY_ROOT = "STUDY_ROOT"
    MODALITY_WORKLIST = "MODALITY_WORKLIST"


class QueryLevel(StrEnum):
    """Values of Query/Retrieve Level (0008,0052), and the one level of the Modality Worklist
    (whose identifiers carry no level): each answer is a scheduled procedure step."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"
    SCHEDULED_PROCEDURE_STEP = "SCHEDULED_PROCEDURE_STEP"

    @property
    def depth(self) -> int:
        return _DEPTH[self]


_DEPTH = {
    QueryLevel.PATIENT: 0,
    QueryLevel.STUDY: 1,
    QueryLevel.SERIES: 2,
    QueryLevel.IMAGE: 3,
    QueryLevel.SCHEDULED_PROCEDURE_STEP: 0,  # a model of its own, with a single level
}

LEVELS_BY_MODEL: dict[InformationModel, tuple[QueryLevel, ...]] = {
    InformationModel.PATIENT_ROOT: (
        QueryLevel.PATIENT,
        QueryLevel.STUDY,
        QueryLevel.SERIES,
        QueryLevel.IMAGE,
    ),
    InformationModel.STUDY_ROOT: (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE),
    InformationModel.MODALITY_WORKLIST: (QueryLevel.SCHEDULED_PROCEDURE_STEP,),
}

# The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEY: dict[QueryLevel, str] = {
    QueryLevel.PATIENT: "PatientID",
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}
