"""The synthetic paediatric data set: determinism, hierarchy, ages and IOD conformance."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from pedipacs.demo.generator import (
    CR_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    DX_IMAGE_STORAGE_FOR_PRESENTATION,
    US_MULTIFRAME_IMAGE_STORAGE,
    DemoDataSummary,
    generate_ct_series,
    generate_demo_data,
    generate_small_instances,
)
from pedipacs.model.values import as_from_dates

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
CT_SLICES = 6


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo(demo_dir: Path) -> DemoDataSummary:
    """The default twelve patients, with a short CT series to keep the module fast."""
    return generate_demo_data(demo_dir, ct_slices=CT_SLICES)


@pytest.fixture(scope="module")
def headers(demo: DemoDataSummary) -> list[Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in demo.files]


def relative_contents(root: Path) -> dict[Path, bytes]:
    return {path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*.dcm"))}


def parse_age(value: str) -> tuple[int, str]:
    assert re.fullmatch(r"\d{3}[DWMY]", value), value
    return int(value[:3]), value[3]


def completed_months(birth: date, on: date) -> int:
    months = (on.year - birth.year) * 12 + on.month - birth.month
    return months - (1 if on.day < birth.day else 0)


def run_tool(name: str, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    return subprocess.run([name, *map(str, paths)], capture_output=True, text=True, check=False)


def dciodvfy_errors(path: Path) -> list[str]:
    """The Error lines dicom3tools reports (on stderr) for one file; warnings are allowed."""
    result = run_tool("dciodvfy", [path])
    output = result.stdout + result.stderr
    return [line for line in output.splitlines() if line.startswith("Error")]


# --- Determinism ------------------------------------------------------------------------


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    generate_demo_data(tmp_path / "a", patients=4, seed=5, ct_slices=3)
    generate_demo_data(tmp_path / "b", patients=4, seed=5, ct_slices=3)

    first = relative_contents(tmp_path / "a")
    assert first
    assert first == relative_contents(tmp_path / "b")


def test_different_seed_writes_different_files(tmp_path: Path) -> None:
    generate_demo_data(tmp_path / "a", patients=4, seed=5, ct_slices=3)
    generate_demo_data(tmp_path / "b", patients=4, seed=6, ct_slices=3)

    first = relative_contents(tmp_path / "a")
    second = relative_contents(tmp_path / "b")
    assert not set(first.values()) & set(second.values())


def test_progress_is_reported_after_each_file(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    summary = generate_demo_data(
        tmp_path, patients=2, ct_slices=2, progress=lambda *c: calls.append(c)
    )

    total = summary.instances
    assert calls == [(done, total) for done in range(1, total + 1)]


# --- Summary and hierarchy --------------------------------------------------------------


def test_summary_counts_match_files_on_disk(
    demo_dir: Path, demo: DemoDataSummary, headers: list[Dataset]
) -> None:
    on_disk = sorted(path for path in demo_dir.rglob("*") if path.is_file())

    assert sorted(demo.files) == on_disk
    assert demo.instances == len(on_disk)
    assert demo.total_bytes == sum(path.stat().st_size for path in on_disk)
    assert demo.patients == len({ds.PatientID for ds in headers}) == 12
    assert demo.studies == len({ds.StudyInstanceUID for ds in headers})
    assert demo.series == len({ds.SeriesInstanceUID for ds in headers})


def test_every_uid_is_valid(demo: DemoDataSummary) -> None:
    for path in demo.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        elements = [*ds.file_meta.iterall(), *ds.iterall()]
        uids = [str(element.value) for element in elements if element.VR == "UI"]
        assert len(uids) >= 7  # meta (3), SOP class and instance, study, series
        for uid in uids:
            assert len(uid) <= 64, uid
            assert UID_PATTERN.match(uid), uid


def test_hierarchy_is_consistent(headers: list[Dataset]) -> None:
    sop_instance_uids = [ds.SOPInstanceUID for ds in headers]
    study_of_series = {(ds.SeriesInstanceUID, ds.StudyInstanceUID) for ds in headers}
    patient_of_study = {(ds.StudyInstanceUID, ds.PatientID) for ds in headers}
    patient_records = {
        (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) for ds in headers
    }

    assert len(set(sop_instance_uids)) == len(sop_instance_uids)
    assert len(study_of_series) == len({series for series, _ in study_of_series})
    assert len(patient_of_study) == len({study for study, _ in patient_of_study})
    assert len(patient_records) == len({record[0] for record in patient_records})


def test_identifiers_look_like_a_childrens_hospital(headers: list[Dataset]) -> None:
    for ds in headers:
        assert re.fullmatch(r"PED\d+", ds.PatientID)
        assert ds.IssuerOfPatientID
        assert ds.AccessionNumber
        assert ds.StudyID
        assert ds.InstitutionName
        assert ds.ReferringPhysicianName
        assert float(ds.PatientWeight) > 0
    assert len({ds.AccessionNumber for ds in headers}) == len(
        {ds.StudyInstanceUID for ds in headers}
    )


def test_a_patient_name_has_a_non_ascii_latin_1_character(headers: list[Dataset]) -> None:
    names = {str(ds.PatientName) for ds in headers}

    assert any(not name.isascii() for name in names)
    assert {ds.SpecificCharacterSet for ds in headers} == {"ISO_IR 100"}


# --- Ages -------------------------------------------------------------------------------


def test_ages_span_neonates_to_teenagers(headers: list[Dataset]) -> None:
    ages = [parse_age(ds.PatientAge) for ds in headers]

    assert any(unit == "D" and number < 28 for number, unit in ages)
    assert any(unit == "Y" and 13 <= number <= 17 for number, unit in ages)
    assert {unit for _, unit in ages} >= {"D", "M", "Y"}


def test_patient_age_agrees_with_birth_date_and_study_date(headers: list[Dataset]) -> None:
    for ds in headers:
        birth = date.fromisoformat(ds.PatientBirthDate)
        study = date.fromisoformat(ds.StudyDate)
        number, unit = parse_age(ds.PatientAge)
        expected = {
            "D": (study - birth).days,
            "W": (study - birth).days // 7,
            "M": completed_months(birth, study),
            "Y": completed_months(birth, study) // 12,
        }
        assert number == expected[unit], (ds.PatientAge, birth, study)


@pytest.mark.parametrize(
    ("birth", "on", "expected"),
    [
        (date(2024, 3, 1), date(2024, 3, 1), "000D"),
        (date(2024, 3, 1), date(2024, 3, 28), "027D"),
        (date(2024, 3, 1), date(2024, 3, 29), "004W"),
        (date(2024, 3, 1), date(2024, 5, 31), "013W"),
        (date(2024, 3, 1), date(2024, 6, 1), "003M"),
        (date(2022, 3, 15), date(2024, 3, 14), "023M"),
        (date(2022, 3, 15), date(2024, 3, 15), "002Y"),
        (date(2007, 1, 31), date(2024, 12, 31), "017Y"),
    ],
)
def test_patient_age_uses_days_weeks_months_then_years(
    birth: date, on: date, expected: str
) -> None:
    assert as_from_dates(birth, on) == expected


# --- Modalities -------------------------------------------------------------------------


def test_every_modality_is_present(headers: list[Dataset]) -> None:
    classes = Counter(ds.SOPClassUID for ds in headers)

    assert classes[CT_IMAGE_STORAGE] == CT_SLICES
    assert classes[CR_IMAGE_STORAGE] >= 1
    assert classes[DX_IMAGE_STORAGE_FOR_PRESENTATION] >= 1
    assert classes[US_MULTIFRAME_IMAGE_STORAGE] >= 1


def test_ultrasound_clips_are_multi_frame_cine(headers: list[Dataset]) -> None:
    clips = [ds for ds in headers if ds.SOPClassUID == US_MULTIFRAME_IMAGE_STORAGE]

    for ds in clips:
        assert 20 <= ds.NumberOfFrames <= 40
        assert float(ds.FrameTime) > 0
        assert ds.CineRate > 0
    assert {ds.PhotometricInterpretation for ds in clips} == {"MONOCHROME2", "RGB"}


def test_ct_series_is_a_stack_of_parallel_slices(headers: list[Dataset]) -> None:
    slices = sorted(
        (ds for ds in headers if ds.SOPClassUID == CT_IMAGE_STORAGE),
        key=lambda ds: ds.InstanceNumber,
    )
    heights = [float(ds.ImagePositionPatient[2]) for ds in slices]

    assert len({ds.SeriesInstanceUID for ds in slices}) == 1
    assert len({ds.FrameOfReferenceUID for ds in slices}) == 1
    assert heights == sorted(heights)
    assert all(float(ds.SliceThickness) > 0 for ds in slices)
    assert all(float(ds.RescaleIntercept) == -1024 for ds in slices)


def test_pixel_data_decodes(demo: DemoDataSummary) -> None:
    for path in demo.files:
        ds = pydicom.dcmread(path)
        assert ds.pixel_array.std() > 0


def test_default_data_set_is_a_few_tens_of_megabytes(tmp_path: Path) -> None:
    summary = generate_demo_data(tmp_path)

    assert 10_000_000 < summary.total_bytes < 60_000_000


# --- Conformance ------------------------------------------------------------------------


def test_every_file_is_dicom_part_10_for_dcmftest(demo: DemoDataSummary) -> None:
    result = run_tool("dcmftest", list(demo.files))

    verdicts = result.stdout.splitlines()
    assert len(verdicts) == len(demo.files)
    assert all(line.startswith("yes:") for line in verdicts), result.stdout


def test_every_file_passes_dciodvfy_without_errors(demo: DemoDataSummary) -> None:
    errors = {path: found for path in demo.files if (found := dciodvfy_errors(path))}

    assert errors == {}


# --- Benchmark sets ---------------------------------------------------------------------


def test_small_instances_come_in_studies_of_per_study(tmp_path: Path) -> None:
    paths = generate_small_instances(tmp_path, 120, per_study=50)
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]

    assert len(paths) == len(set(paths)) == 120
    per_study = Counter(ds.StudyInstanceUID for ds in headers)
    assert sorted(per_study.values()) == [20, 50, 50]
    assert len({ds.PatientID for ds in headers}) == 3
    assert {(ds.Rows, ds.Columns) for ds in headers} == {(64, 64)}
    assert len({ds.SOPInstanceUID for ds in headers}) == 120


def test_small_instances_pass_dciodvfy(tmp_path: Path) -> None:
    paths = generate_small_instances(tmp_path, 3, per_study=2)

    assert [dciodvfy_errors(path) for path in paths] == [[], [], []]


def test_ct_series_has_the_requested_slices_of_512_kib(tmp_path: Path) -> None:
    paths = generate_ct_series(tmp_path, slices=3)
    datasets = [pydicom.dcmread(path) for path in paths]

    assert len(paths) == 3
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    for ds in datasets:
        assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (512, 512, 16)
        assert len(ds.PixelData) == 512 * 512 * 2
    assert dciodvfy_errors(paths[0]) == []


def test_ct_series_honours_a_smaller_matrix(tmp_path: Path) -> None:
    paths = generate_ct_series(tmp_path, slices=2, rows=128, columns=96)

    ds = pydicom.dcmread(paths[0])
    assert (ds.Rows, ds.Columns) == (128, 96)
    assert ds.pixel_array.shape == (128, 96)


def test_no_small_instances_are_written_for_a_count_of_zero(tmp_path: Path) -> None:
    assert generate_small_instances(tmp_path, 0) == []
    assert list(tmp_path.iterdir()) == []
