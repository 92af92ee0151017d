"""PS3.4 C.2.2.2 matching cases as data, with the purpose-made data set they run against.

Every door that turns a request into a `model.Query` (C-FIND today, QIDO-RS later) runs the
same `MATCHING_CASES` against the same `write_dataset` files and must return exactly the
`expected` unique keys. A case is written as C-FIND identifier keys (DICOM keyword, value as
findscu's `-k` takes it); a QIDO test maps the same keys to query parameters.

The data set is small and chosen to exercise the rules: names that differ only in case, names
sharing a prefix (DOE^ / DOEBLER^), an apostrophe, a non-ASCII name (ISO_IR 192), literal `%`
and `_` next to names that would match if they were SQL wildcards, study dates from 2020 to
2025 with times at the edges of minute ranges, and studies mixing CT, US, CR, DX and MR.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian

from pedipacs.model.levels import UNIQUE_KEY, InformationModel, QueryLevel

UID_ROOT = "1.2.826.0.1.3680043.8.498.7311"
UNKNOWN_STUDY_UID = f"{UID_ROOT}.1.999"

SOP_CLASS_BY_MODALITY = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
}


def study_uid(study: int) -> str:
    return f"{UID_ROOT}.1.{study}"


def series_uid(study: int, series: int) -> str:
    return f"{UID_ROOT}.2.{study}.{series}"


def instance_uid(study: int, series: int, instance: int) -> str:
    return f"{UID_ROOT}.3.{study}.{series}.{instance}"


# -- the data set -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str


@dataclass(frozen=True)
class SeriesRecord:
    modality: str
    series_description: str
    body_part_examined: str
    instances: int = 1


@dataclass(frozen=True)
class StudyRecord:
    number: int
    patient_id: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    referring_physician_name: str | None
    series: tuple[SeriesRecord, ...]


PATIENTS = (
    PatientRecord("PID001", "DOE^JOHN", "20150310", "M"),
    PatientRecord("PID002", "DOE^JANE", "20160722", "F"),
    PatientRecord("PID003", "DOEBLER^ANNA", "20180101", "F"),
    PatientRecord("PID004", "O'NEIL^SEAN", "20121130", "M"),
    PatientRecord("PID005", "smith^baby", "20240215", "O"),
    PatientRecord("PID006", "MÜLLER^JÖRG", "20140505", "M"),
    PatientRecord("PID007", "100%^PURE", "20190909", "F"),
    PatientRecord("PID008", "1000^MILES", "20170707", "M"),
    PatientRecord("PID009", "UNDER_SCORE^AMY", "20110101", "F"),
    PatientRecord("PID010", "UNDERXSCORE^BEN", "20100101", "M"),
    PatientRecord("pid011", "ROE^JOAN", "20200202", "F"),
)

STUDIES = (
    StudyRecord(1, "PID001", "20200115", "083000", "A1001", "CT HEAD", "Okonjo^Adaeze", (
        SeriesRecord("CT", "Axial", "HEAD", instances=2),
        SeriesRecord("CT", "Scout", "HEAD"),
    )),
    StudyRecord(2, "PID001", "20220630", "140510", "A1002", "US ABDOMEN", "Patel^Priya", (
        SeriesRecord("US", "Liver", "ABDOMEN", instances=2),
        SeriesRecord("CR", "Chest PA", "CHEST"),
    )),
    StudyRecord(3, "PID002", "20210301", "101530", "a1003", "MR BRAIN", "Okonjo^Adaeze", (
        SeriesRecord("MR", "T1", "BRAIN"),
    )),
    StudyRecord(4, "PID003", "20231231", "235959", "A1004", "XR HAND", None, (
        SeriesRecord("DX", "Left hand", "HAND"),
        SeriesRecord("CR", "Right hand", "HAND"),
    )),
    StudyRecord(5, "PID004", "20240229", "000000", "A1005", "TRAUMA", "Chen^Wei", (
        SeriesRecord("CT", "Whole body", "WHOLEBODY"),
        SeriesRecord("MR", "Spine", "SPINE"),
        SeriesRecord("US", "FAST", "ABDOMEN"),
    )),
    StudyRecord(6, "PID005", "20240215", "101559.5", "A1006", "neonatal head us", "Patel^Priya", (
        SeriesRecord("US", "Cranial", "HEAD"),
    )),
    StudyRecord(7, "PID006", "20250704", "101600", "A1007", "CHEST", "Lindqvist^Henrik", (
        SeriesRecord("CR", "Chest AP", "CHEST"),
    )),
    StudyRecord(8, "PID007", "20201231", "120000", "A%08", "HIP", None, (
        SeriesRecord("DX", "Hip", "HIP"),
    )),
    StudyRecord(9, "PID008", "20250101", "090000", "A1009", "CT ABDOMEN", None, (
        SeriesRecord("CT", "Abdomen", "ABDOMEN"),
    )),
    StudyRecord(10, "PID009", "20220101", "133000", "A_10", "MR KNEE", None, (
        SeriesRecord("MR", "Knee", "KNEE"),
    )),
    StudyRecord(11, "PID010", "20230505", "160000", "AX10", "CHEST [PA]", None, (
        SeriesRecord("CR", "Chest PA", "CHEST"),
    )),
    StudyRecord(12, "pid011", "20251231", "070000", "A1012", "SPINE", None, (
        SeriesRecord("DX", "Spine", "SPINE"),
    )),
)  # fmt: skip

ALL_STUDY_NUMBERS = tuple(study.number for study in STUDIES)


def dataset_files(directory: Path) -> list[Path]:
    """Write every instance of the data set as a Part 10 file under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    patients = {patient.patient_id: patient for patient in PATIENTS}
    paths: list[Path] = []
    for study in STUDIES:
        for series_number, series in enumerate(study.series, start=1):
            for number in range(1, series.instances + 1):
                dataset = _instance(
                    patients[study.patient_id], study, series_number, series, number
                )
                path = directory / f"{study.number:02d}-{series_number}-{number}.dcm"
                dataset.save_as(path, enforce_file_format=True)
                paths.append(path)
    return paths


def _instance(
    patient: PatientRecord,
    study: StudyRecord,
    series_number: int,
    series: SeriesRecord,
    number: int,
) -> Dataset:
    sop_class_uid = SOP_CLASS_BY_MODALITY[series.modality]
    sop_instance_uid = instance_uid(study.number, series_number, number)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.SOPClassUID = sop_class_uid
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.PatientID = patient.patient_id
    dataset.PatientName = patient.patient_name
    dataset.PatientBirthDate = patient.patient_birth_date
    dataset.PatientSex = patient.patient_sex
    dataset.StudyInstanceUID = study_uid(study.number)
    dataset.StudyDate = study.study_date
    dataset.StudyTime = study.study_time
    dataset.AccessionNumber = study.accession_number
    dataset.StudyID = str(study.number)
    dataset.StudyDescription = study.study_description
    if study.referring_physician_name is not None:
        dataset.ReferringPhysicianName = study.referring_physician_name
    dataset.SeriesInstanceUID = series_uid(study.number, series_number)
    dataset.Modality = series.modality
    dataset.SeriesNumber = series_number
    dataset.SeriesDescription = series.series_description
    dataset.BodyPartExamined = series.body_part_examined
    dataset.SeriesDate = study.study_date
    dataset.InstanceNumber = number
    dataset.ContentDate = study.study_date
    dataset.Rows = 2
    dataset.Columns = 2
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 8
    dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = bytes(4)
    return dataset


# -- the cases ----------------------------------------------------------------------------------

Keys = tuple[tuple[str, str], ...]
S, P = InformationModel.STUDY_ROOT, InformationModel.PATIENT_ROOT
PATIENT, STUDY, SERIES, IMAGE = (
    QueryLevel.PATIENT,
    QueryLevel.STUDY,
    QueryLevel.SERIES,
    QueryLevel.IMAGE,
)
UTF8: Keys = (("SpecificCharacterSet", "ISO_IR 192"),)


@dataclass(frozen=True)
class MatchingCase:
    """A valid query and exactly what it must return.

    `expected` holds the unique key values (PS3.4 C.6.1.1 / C.6.2.1) of every entity that must
    match, and no other. `returned` maps some of them to attribute values the response must carry,
    multi-valued attributes joined with a backslash, an empty string for "present but empty".
    """

    name: str
    model: InformationModel
    level: QueryLevel
    keys: Keys
    expected: frozenset[str]
    returned: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def unique_keyword(self) -> str:
        return UNIQUE_KEY[self.level]

    @property
    def request_keys(self) -> Keys:
        """`keys` with the level's unique key added (empty) when absent: a conformant SCU always
        sends it (PS3.4 C.4.1.2.1), so every response carries it."""
        if any(keyword == self.unique_keyword for keyword, _ in self.keys):
            return self.keys
        return ((self.unique_keyword, ""), *self.keys)


@dataclass(frozen=True)
class InvalidCase:
    """An identifier that must be refused (C-FIND: a failure status, never success)."""

    name: str
    model: InformationModel
    level: str | None  # None: QueryRetrieveLevel absent from the identifier
    keys: Keys


def studies(*numbers: int) -> frozenset[str]:
    return frozenset(study_uid(number) for number in numbers)


def all_studies_except(*numbers: int) -> frozenset[str]:
    return studies(*(n for n in ALL_STUDY_NUMBERS if n not in numbers))


def series_of(*pairs: tuple[int, int]) -> frozenset[str]:
    return frozenset(series_uid(study, series) for study, series in pairs)


def instances_of(*triples: tuple[int, int, int]) -> frozenset[str]:
    return frozenset(instance_uid(*triple) for triple in triples)


def _study(
    name: str,
    keys: Keys,
    expected: frozenset[str],
    returned: Mapping[str, Mapping[str, str]] | None = None,
) -> MatchingCase:
    """A Study Root STUDY level case, the most common kind."""
    return MatchingCase(name, S, STUDY, keys, expected, returned or {})


def _pn(pattern: str) -> Keys:
    return (("PatientName", pattern), ("StudyInstanceUID", ""))


SINGLE_VALUE_CASES = (
    _study("pn_single_value_ignores_case", _pn("doe^john"), studies(1, 2)),
    _study("pn_single_value_matches_lower_case_stored_name", _pn("SMITH^BABY"), studies(6)),
    _study("pn_single_value_with_apostrophe", _pn("O'NEIL^SEAN"), studies(5)),
    _study("pn_single_value_non_ascii_ignores_case", UTF8 + _pn("müller^jörg"), studies(7)),
    _study("pn_single_value_with_percent_is_literal", _pn("100%^PURE"), studies(8)),
    _study("pn_single_value_ignores_trailing_empty_components", _pn("DOE^JANE^^^"), studies(3)),
    _study("pn_single_value_of_family_name_only_is_not_a_prefix", _pn("DOE"), studies()),
    _study("referring_physician_pn_ignores_case",
           (("ReferringPhysicianName", "OKONJO^ADAEZE"),), studies(1, 3)),
    _study("patient_id_lo_is_case_sensitive_no_match", (("PatientID", "PID011"),), studies()),
    _study("patient_id_lo_is_case_sensitive_match", (("PatientID", "pid011"),), studies(12)),
    _study("accession_sh_is_case_sensitive_no_match", (("AccessionNumber", "A1003"),), studies()),
    _study("accession_sh_is_case_sensitive_match", (("AccessionNumber", "a1003"),), studies(3)),
    _study("accession_with_underscore_is_literal", (("AccessionNumber", "A_10"),), studies(10)),
    _study("study_description_lo_is_case_sensitive",
           (("StudyDescription", "ct head"),), studies()),
)  # fmt: skip

UNIVERSAL_CASES = (
    _study("universal_empty_pn_matches_every_study", _pn(""), studies(*ALL_STUDY_NUMBERS)),
    _study("universal_star_pn_matches_every_study", _pn("*"), studies(*ALL_STUDY_NUMBERS)),
    _study("universal_star_text_matches_every_study",
           (("AccessionNumber", "*"),), studies(*ALL_STUDY_NUMBERS)),
    _study("universal_empty_date_matches_every_study",
           (("StudyDate", ""), ("StudyTime", "")), studies(*ALL_STUDY_NUMBERS)),
)  # fmt: skip

WILDCARD_CASES = (
    _study("pn_wildcard_star_at_end", _pn("DOE*"), studies(1, 2, 3, 4)),
    _study("pn_wildcard_star_after_component_separator", _pn("DOE^*"), studies(1, 2, 3)),
    _study("pn_wildcard_star_at_start", _pn("*SEAN"), studies(5)),
    _study("pn_wildcard_star_in_middle", _pn("D*N"), studies(1, 2)),
    _study("pn_wildcard_star_and_question_inside", _pn("*JO?N*"), studies(1, 2, 12)),
    _study("pn_wildcard_question_at_start", _pn("?OE^J*"), studies(1, 2, 3, 12)),
    _study("pn_wildcard_question_at_end", _pn("DOE^JAN?"), studies(3)),
    _study("pn_wildcard_ignores_case", _pn("doe^j*"), studies(1, 2, 3)),
    _study("pn_wildcard_matches_lower_case_stored_name", _pn("SMITH*"), studies(6)),
    _study("pn_wildcard_question_matches_one_non_ascii_character",
           UTF8 + _pn("M?LLER*"), studies(7)),
    _study("pn_wildcard_non_ascii_ignores_case", UTF8 + _pn("*jörg"), studies(7)),
    _study("pn_wildcard_percent_in_pattern_is_literal", _pn("100%*"), studies(8)),
    _study("pn_wildcard_underscore_in_pattern_is_literal", _pn("UNDER_SCORE*"), studies(10)),
    _study("pn_wildcard_underscore_inside_pattern_is_literal", _pn("*R_S*"), studies(10)),
    _study("referring_physician_pn_wildcard_ignores_case",
           (("ReferringPhysicianName", "okon*"),), studies(1, 3)),
    _study("patient_id_wildcard_question_is_case_sensitive",
           (("PatientID", "PID0??"),), all_studies_except(12)),
    _study("accession_wildcard_prefix_is_case_sensitive",
           (("AccessionNumber", "A*"),), all_studies_except(3)),
    _study("accession_wildcard_inside_is_case_sensitive",
           (("AccessionNumber", "*a*"),), studies(3)),
    _study("accession_wildcard_percent_is_literal", (("AccessionNumber", "A%*"),), studies(8)),
    _study("accession_wildcard_underscore_is_literal", (("AccessionNumber", "A_1*"),), studies(10)),
    _study("accession_wildcard_question_matches_literal_underscore",
           (("AccessionNumber", "A?10"),), studies(10, 11)),
    _study("study_description_wildcard_is_case_sensitive_upper",
           (("StudyDescription", "*HEAD*"),), studies(1)),
    _study("study_description_wildcard_is_case_sensitive_lower",
           (("StudyDescription", "*head*"),), studies(6)),
    _study("study_description_wildcard_brackets_are_literal",
           (("StudyDescription", "*[PA]"),), studies(11)),
)  # fmt: skip

RANGE_CASES = (
    _study("date_single_value", (("StudyDate", "20220630"),), studies(2)),
    _study("date_single_value_leap_day", (("StudyDate", "20240229"),), studies(5)),
    _study("date_closed_range_is_inclusive",
           (("StudyDate", "20210301-20220630"),), studies(2, 3, 10)),
    _study("date_range_open_start_is_inclusive", (("StudyDate", "-20201231"),), studies(1, 8)),
    _study("date_range_open_end_is_inclusive", (("StudyDate", "20250101-"),), studies(7, 9, 12)),
    _study("date_range_reversed_matches_nothing", (("StudyDate", "20251231-20200101"),), studies()),
    _study("time_range_open_start_minute_covers_whole_minute",
           (("StudyTime", "-1015"),), studies(1, 3, 5, 6, 9, 12)),
    _study("time_range_open_start_second_covers_fractions",
           (("StudyTime", "-101559"),), studies(1, 3, 5, 6, 9, 12)),
    _study("time_range_closed_hour_minute", (("StudyTime", "1200-1500"),), studies(2, 8, 10)),
    _study("time_range_open_end", (("StudyTime", "2359-"),), studies(4)),
    _study("time_range_with_fraction", (("StudyTime", "101559.5-101600"),), studies(6, 7)),
    _study("time_single_value_minute_precision", (("StudyTime", "1015"),), studies(3, 6)),
    _study("date_and_time_ranges_combined",
           (("StudyDate", "20240101-20241231"), ("StudyTime", "-1200")), studies(5, 6)),
    _study("date_range_and_modality_combined",
           (("StudyDate", "20200101-20221231"), ("ModalitiesInStudy", "CR")), studies(2)),
    MatchingCase("patient_birth_date_range_at_patient_level", P, PATIENT,
                 (("PatientBirthDate", "20150101-20191231"),),
                 frozenset({"PID001", "PID002", "PID003", "PID007", "PID008"})),
)  # fmt: skip

UID_LIST_CASES = (
    _study("study_uid_single_value", (("StudyInstanceUID", study_uid(5)),), studies(5)),
    _study("study_uid_list_matches_any",
           (("StudyInstanceUID", f"{study_uid(1)}\\{study_uid(3)}\\{UNKNOWN_STUDY_UID}"),),
           studies(1, 3)),
    _study("study_uid_unknown_matches_nothing",
           (("StudyInstanceUID", UNKNOWN_STUDY_UID),), studies()),
    MatchingCase("series_uid_list_matches_any", S, SERIES,
                 (("StudyInstanceUID", study_uid(2)),
                  ("SeriesInstanceUID", f"{series_uid(2, 1)}\\{series_uid(2, 2)}")),
                 series_of((2, 1), (2, 2))),
)  # fmt: skip

MODALITIES_CASES = (
    _study("modalities_in_study_single_value", (("ModalitiesInStudy", "MR"),), studies(3, 5, 10)),
    _study("modalities_in_study_multiple_values_match_any",
           (("ModalitiesInStudy", "CT\\MR"),), studies(1, 3, 5, 9, 10)),
    _study("modalities_in_study_is_case_sensitive", (("ModalitiesInStudy", "ct"),), studies()),
    _study("modalities_in_study_returns_every_modality_of_a_matched_study",
           (("ModalitiesInStudy", "MR"), ("PatientID", "PID004"),
            ("NumberOfStudyRelatedSeries", ""), ("NumberOfStudyRelatedInstances", "")),
           studies(5),
           returned={study_uid(5): {"ModalitiesInStudy": "CT\\MR\\US",
                                    "NumberOfStudyRelatedSeries": "3",
                                    "NumberOfStudyRelatedInstances": "3"}}),
)  # fmt: skip

_STUDY_AGGREGATES: Keys = (
    ("ModalitiesInStudy", ""),
    ("NumberOfStudyRelatedSeries", ""),
    ("NumberOfStudyRelatedInstances", ""),
)

LEVEL_CASES = (
    MatchingCase("patient_root_patient_level_wildcard_with_aggregates", P, PATIENT,
                 (("PatientName", "DOE*"), ("PatientID", ""),
                  ("NumberOfPatientRelatedStudies", ""), ("NumberOfPatientRelatedSeries", ""),
                  ("NumberOfPatientRelatedInstances", "")),
                 frozenset({"PID001", "PID002", "PID003"}),
                 returned={
                     "PID001": {"PatientName": "DOE^JOHN", "NumberOfPatientRelatedStudies": "2",
                                "NumberOfPatientRelatedSeries": "4",
                                "NumberOfPatientRelatedInstances": "6"},
                     "PID003": {"PatientName": "DOEBLER^ANNA",
                                "NumberOfPatientRelatedStudies": "1",
                                "NumberOfPatientRelatedSeries": "2",
                                "NumberOfPatientRelatedInstances": "2"},
                 }),
    MatchingCase("patient_root_patient_level_universal", P, PATIENT,
                 (("PatientID", ""), ("PatientName", "")),
                 frozenset(patient.patient_id for patient in PATIENTS),
                 returned={"PID006": {"PatientName": "MÜLLER^JÖRG"},
                           "PID005": {"PatientName": "smith^baby"}}),
    MatchingCase("patient_root_patient_level_cs_single_value", P, PATIENT,
                 (("PatientSex", "F"),),
                 frozenset({"PID002", "PID003", "PID007", "PID009", "pid011"})),
    MatchingCase("patient_root_study_level", P, STUDY,
                 (("PatientID", "PID001"), ("StudyInstanceUID", ""), *_STUDY_AGGREGATES),
                 studies(1, 2),
                 returned={
                     study_uid(1): {"ModalitiesInStudy": "CT", "NumberOfStudyRelatedSeries": "2",
                                    "NumberOfStudyRelatedInstances": "3"},
                     study_uid(2): {"ModalitiesInStudy": "CR\\US",
                                    "NumberOfStudyRelatedSeries": "2",
                                    "NumberOfStudyRelatedInstances": "3"},
                 }),
    MatchingCase("patient_root_series_level", P, SERIES,
                 (("PatientID", "PID001"), ("StudyInstanceUID", study_uid(2)),
                  ("SeriesInstanceUID", ""), ("Modality", ""),
                  ("NumberOfSeriesRelatedInstances", "")),
                 series_of((2, 1), (2, 2)),
                 returned={
                     series_uid(2, 1): {"Modality": "US", "NumberOfSeriesRelatedInstances": "2"},
                     series_uid(2, 2): {"Modality": "CR", "NumberOfSeriesRelatedInstances": "1"},
                 }),
    MatchingCase("patient_root_image_level", P, IMAGE,
                 (("PatientID", "PID001"), ("StudyInstanceUID", study_uid(1)),
                  ("SeriesInstanceUID", series_uid(1, 1)), ("SOPInstanceUID", ""),
                  ("InstanceNumber", ""), ("SOPClassUID", "")),
                 instances_of((1, 1, 1), (1, 1, 2)),
                 returned={
                     instance_uid(1, 1, 2): {"InstanceNumber": "2",
                                             "SOPClassUID": SOP_CLASS_BY_MODALITY["CT"]},
                 }),
    _study("study_root_study_level_aggregates",
           (("StudyInstanceUID", study_uid(4)), *_STUDY_AGGREGATES), studies(4),
           returned={study_uid(4): {"ModalitiesInStudy": "CR\\DX",
                                    "NumberOfStudyRelatedSeries": "2",
                                    "NumberOfStudyRelatedInstances": "2"}}),
    MatchingCase("study_root_series_level_cs_single_value", S, SERIES,
                 (("StudyInstanceUID", study_uid(1)), ("Modality", "CT"), ("SeriesNumber", ""),
                  ("NumberOfSeriesRelatedInstances", "")),
                 series_of((1, 1), (1, 2)),
                 returned={
                     series_uid(1, 1): {"SeriesNumber": "1", "NumberOfSeriesRelatedInstances": "2"},
                     series_uid(1, 2): {"SeriesNumber": "2", "NumberOfSeriesRelatedInstances": "1"},
                 }),
    MatchingCase("study_root_series_level_picks_one_modality_of_a_mixed_study", S, SERIES,
                 (("StudyInstanceUID", study_uid(5)), ("Modality", "MR")),
                 series_of((5, 2))),
    MatchingCase("study_root_series_level_wildcard_is_case_sensitive_lower", S, SERIES,
                 (("StudyInstanceUID", study_uid(4)), ("SeriesDescription", "*hand")),
                 series_of((4, 1), (4, 2))),
    MatchingCase("study_root_series_level_wildcard_is_case_sensitive_upper", S, SERIES,
                 (("StudyInstanceUID", study_uid(4)), ("SeriesDescription", "*HAND")),
                 series_of()),
    MatchingCase("study_root_image_level", S, IMAGE,
                 (("StudyInstanceUID", study_uid(2)), ("SeriesInstanceUID", series_uid(2, 1)),
                  ("InstanceNumber", ""), ("Rows", ""), ("Columns", "")),
                 instances_of((2, 1, 1), (2, 1, 2)),
                 returned={instance_uid(2, 1, 1): {"InstanceNumber": "1", "Rows": "2",
                                                   "Columns": "2"}}),
    MatchingCase("study_root_image_level_integer_single_value", S, IMAGE,
                 (("StudyInstanceUID", study_uid(1)), ("SeriesInstanceUID", series_uid(1, 1)),
                  ("InstanceNumber", "2")),
                 instances_of((1, 1, 2))),
    MatchingCase("study_root_image_level_sop_instance_uid_list", S, IMAGE,
                 (("StudyInstanceUID", study_uid(1)), ("SeriesInstanceUID", series_uid(1, 1)),
                  ("SOPInstanceUID", f"{instance_uid(1, 1, 2)}\\{instance_uid(2, 1, 1)}")),
                 instances_of((1, 1, 2))),
)  # fmt: skip

RETURN_KEY_CASES = (
    _study("return_keys_come_back_with_stored_values_or_empty",
           (("StudyInstanceUID", study_uid(4)), ("PatientName", ""), ("PatientBirthDate", ""),
            ("AccessionNumber", ""), ("StudyDate", ""), ("StudyTime", ""),
            ("StudyDescription", ""), ("ReferringPhysicianName", ""), ("PatientComments", "")),
           studies(4),
           returned={study_uid(4): {"PatientName": "DOEBLER^ANNA", "PatientBirthDate": "20180101",
                                    "AccessionNumber": "A1004", "StudyDate": "20231231",
                                    "StudyTime": "235959", "StudyDescription": "XR HAND",
                                    "ReferringPhysicianName": "", "PatientComments": ""}}),
    _study("return_keys_non_ascii_name_and_fractional_time",
           (("PatientID", "PID006"), ("PatientName", ""), ("ReferringPhysicianName", "")),
           studies(7),
           returned={study_uid(7): {"PatientName": "MÜLLER^JÖRG",
                                    "ReferringPhysicianName": "Lindqvist^Henrik"}}),
    _study("return_keys_time_with_fraction",
           (("PatientID", "PID005"), ("StudyTime", "")), studies(6),
           returned={study_uid(6): {"StudyTime": "101559.500000"}}),
    _study("return_key_of_a_lower_level_comes_back_empty",
           (("StudyInstanceUID", study_uid(3)), ("SeriesDescription", "")), studies(3),
           returned={study_uid(3): {"SeriesDescription": ""}}),
)  # fmt: skip

MATCHING_CASES: tuple[MatchingCase, ...] = (
    *SINGLE_VALUE_CASES,
    *UNIVERSAL_CASES,
    *WILDCARD_CASES,
    *RANGE_CASES,
    *UID_LIST_CASES,
    *MODALITIES_CASES,
    *LEVEL_CASES,
    *RETURN_KEY_CASES,
)

INVALID_CASES: tuple[InvalidCase, ...] = (
    InvalidCase("query_retrieve_level_missing", S, None, (("PatientName", "DOE*"),)),
    InvalidCase("query_retrieve_level_patient_in_study_root", S, "PATIENT", (("PatientID", ""),)),
    InvalidCase("query_retrieve_level_unknown", P, "FRAME", (("PatientID", ""),)),
    InvalidCase("date_range_with_two_separators", S, "STUDY",
                (("StudyDate", "2020-2021-2022"),)),
    InvalidCase("date_with_wildcard", S, "STUDY", (("StudyDate", "2020*"),)),
    InvalidCase("date_with_question_mark", S, "STUDY", (("StudyDate", "2020010?"),)),
    InvalidCase("date_not_a_calendar_day", S, "STUDY", (("StudyDate", "20201301"),)),
    InvalidCase("date_range_bound_not_a_date", S, "STUDY", (("StudyDate", "2020-"),)),
    InvalidCase("date_list_of_values", S, "STUDY", (("StudyDate", "20200115\\20220630"),)),
    InvalidCase("time_not_a_time", S, "STUDY", (("StudyTime", "2561"),)),
    InvalidCase("integer_with_wildcard", S, "IMAGE",
                (("StudyInstanceUID", study_uid(1)), ("SeriesInstanceUID", series_uid(1, 1)),
                 ("InstanceNumber", "1*"))),
    InvalidCase("series_key_constrains_a_study_level_query", S, "STUDY", (("Modality", "CT"),)),
)  # fmt: skip


# -- turning a case into an identifier and a response into comparable values -------------------


def identifier_keys(level: str | None, keys: Keys) -> list[str]:
    """The `-k` arguments of findscu: `Keyword=value`, the level first when there is one."""
    level_key = [] if level is None else [f"QueryRetrieveLevel={level}"]
    return level_key + [f"{keyword}={value}" for keyword, value in keys]


def identifier_dataset(level: str | None, keys: Keys) -> Dataset:
    """The same identifier as a C-FIND SCP receives it: encoded, then decoded by pydicom.

    Values go through the wire form (Implicit VR Little Endian, UTF-8 text), so invalid values
    reach the parser as a peer would send them instead of being refused by pydicom on assignment.
    """
    elements = [("QueryRetrieveLevel", level)] if level is not None else []
    encoded = bytearray()
    for keyword, value in sorted([*elements, *keys], key=lambda key: _tag(key[0])):
        tag = _tag(keyword)
        data = value.encode("utf-8")
        if len(data) % 2:
            data += b"\0" if dictionary_VR(tag) == "UI" else b" "
        encoded += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(data)) + data
    return read_dataset(BytesIO(bytes(encoded)), is_implicit_VR=True, is_little_endian=True)


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword} is not a DICOM keyword")
    return int(tag)


def text_value(value: object) -> str:
    """A response value as one string: multi-values joined by backslash, absent as ''."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(text_value(item) for item in value)
    return str(value)
