"""Query/Retrieve information models and levels (PS3.4 C.6)."""

from __future__ import annotations

from enum import StrEnum


class InformationModel(StrEnum):
    PATIENT_ROOT = "PATIENT_ROOT"
    STUDY_ROOT = "STUDY_ROOT"


class QueryLevel(StrEnum):
    """Values of Query/Retrieve Level (0008,0052)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        return _DEPTH[self]


_DEPTH = {
    QueryLevel.PATIENT: 0,
    QueryLevel.STUDY: 1,
    QueryLevel.SERIES: 2,
    QueryLevel.IMAGE: 3,
}

LEVELS_BY_MODEL: dict[InformationModel, tuple[QueryLevel, ...]] = {
    InformationModel.PATIENT_ROOT: (
        QueryLevel.PATIENT,
        QueryLevel.STUDY,
        QueryLevel.SERIES,
        QueryLevel.IMAGE,
    ),
    InformationModel.STUDY_ROOT: (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE),
}

# The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEY: dict[QueryLevel, str] = {
    QueryLevel.PATIENT: "PatientID",
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}
