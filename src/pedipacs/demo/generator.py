"""Deterministic synthetic paediatric DICOM data sets.

Every byte written depends only on the arguments: UIDs are hashed from the seed and the
position in the hierarchy, dates come from a fixed window rather than the clock, and pixels
come from seeded numpy generators. The files pass DCMTK's `dcmftest` and dicom3tools'
`dciodvfy` without errors.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pedipacs.demo.phantoms import ct_head_slice, radiograph, ultrasound_clip
from pedipacs.model.values import as_from_dates

UID_ROOT = "1.2.826.0.1.3680043.8.498."
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
US_MULTIFRAME_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
IMPLEMENTATION_CLASS_UID = generate_uid(UID_ROOT, ["pedipacs.demo.generator"])
IMPLEMENTATION_VERSION_NAME = "PEDIPACS_DEMO_1"

# Studies fall in a fixed window so the data looks recent without reading the clock.
FIRST_STUDY_DATE = date(2021, 1, 4)
LAST_STUDY_DATE = date(2025, 12, 19)
# Up to two follow-ups come at most this many days apart, so the first study leaves room
# for them inside the window, and the oldest child stays under 18 at the last one.
MAX_FOLLOW_UP_GAP_DAYS = 300
MAX_FIRST_AGE_DAYS = int(18 * 365.25) - 2 * MAX_FOLLOW_UP_GAP_DAYS - 30
INSTITUTION_NAME = "Pedipacs Children's Hospital"
DEPARTMENT_NAME = "Paediatric Radiology"
ISSUER_OF_PATIENT_ID = "PEDIPACS-DEMO"
# A child's head: the axial range covered and the reconstructed field of view.
CT_COVERAGE_MM = 140.0
CT_FIELD_OF_VIEW_MM = 200.0
US_CM_PER_PIXEL = 0.04

_GIVEN_NAMES = {
    "F": ("Lena", "Amara", "Sofia", "Chloé", "Freya", "Aisha", "Mei", "Lucía", "Zoe"),
    "M": ("Jonas", "Mateo", "Oliver", "Kwame", "Noah", "Elias", "Ravi", "Søren", "Leo"),
}
# The first family name is always used, so every data set has a non-ASCII Latin-1 name.
_FAMILY_NAMES = (
    "Müller", "Okafor", "Nguyen", "Sørensen", "Núñez", "Fitzgerald", "Kowalski",
    "Haddad", "Lefèvre", "Tanaka", "Andersson", "Mensah", "Rossi", "Brennan",
)  # fmt: skip
_REFERRING_PHYSICIANS = (
    "Okonjo^Adaeze^^Dr.",
    "Lindqvist^Henrik^^Dr.",
    "Patel^Priya^^Dr.",
    "García^Tomás^^Dr.",
    "Chen^Wei^^Dr.",
)
# Manufacturer, model and station per modality (General Equipment module).
_EQUIPMENT = {
    "CT": ("Pedipacs Synthetic", "Virtual CT 64", "CT01"),
    "CR": ("Pedipacs Synthetic", "Virtual CR Reader", "CR01"),
    "DX": ("Pedipacs Synthetic", "Virtual DR Room", "DX02"),
    "US": ("Pedipacs Synthetic", "Virtual US Cart", "US03"),
}


@dataclass(frozen=True)
class DemoDataSummary:
    """What generate_demo_data wrote."""

    files: tuple[Path, ...]
    patients: int
    studies: int
    series: int
    instances: int
    total_bytes: int


@dataclass(frozen=True)
class _Protocol:
    """A kind of study: modality, description and anatomy (SNOMED CT code, meaning)."""

    modality: str
    study_description: str
    body_part_examined: str
    anatomy: tuple[str, str]
    min_age_days: int
    max_age_days: int
    views: tuple[str, ...] = ("",)
    laterality: str = ""
    us_image_type: str = ""
    is_colour: bool = False
    weight: int = 2  # relative frequency when not required; 0 = only when required


_HEAD = ("69536005", "Head")
_CHEST = ("51185008", "Thorax")
_ABDOMEN = ("818983003", "Abdomen")
_HAND = ("85562004", "Hand")
_WRIST = ("74670003", "Wrist")
_KNEE = ("72696002", "Knee")
_ADULT = 18 * 366
_US = ("",)  # one unnamed view: a cine clip
# fmt: off
PROTOCOLS = (
    _Protocol("US", "US Head Neonatal", "HEAD", _HEAD, 0, 270, _US, "", "NEONATAL HEAD"),
    _Protocol("US", "US Abdomen", "ABDOMEN", _ABDOMEN, 0, _ADULT, _US, "", "ABDOMINAL"),
    _Protocol("US", "US Abdomen Doppler", "ABDOMEN", _ABDOMEN, 30, _ADULT, _US, "", "ABDOMINAL",
              is_colour=True, weight=1),
    _Protocol("CR", "XR Babygram AP", "CHEST", _CHEST, 0, 60, ("AP",)),
    _Protocol("CR", "XR Chest AP", "CHEST", _CHEST, 30, 1500, ("AP",)),
    _Protocol("CR", "XR Chest PA and Lateral", "CHEST", _CHEST, 1095, _ADULT, ("PA", "LL")),
    _Protocol("DX", "XR Hand Left (Bone Age)", "HAND", _HAND, 1095, _ADULT, ("PA",), "L"),
    _Protocol("DX", "XR Wrist Right", "WRIST", _WRIST, 730, _ADULT, ("PA", "RL"), "R"),
    _Protocol("DX", "XR Knee Left", "KNEE", _KNEE, 365, _ADULT, ("AP", "LL"), "L"),
    # CT is rare in children (radiation), so it is only chosen when required.
    _Protocol("CT", "CT Head without contrast", "HEAD", _HEAD, 180, _ADULT, weight=0),
)
# fmt: on


@dataclass(frozen=True)
class _Patient:
    index: int
    patient_name: str
    patient_id: str
    patient_birth_date: date
    patient_sex: str
    first_age_days: int


@dataclass(frozen=True)
class _Study:
    patient: _Patient
    protocol: _Protocol
    index: int
    study_instance_uid: str
    accession_number: str
    study_date: date
    study_seconds: int
    referring_physician_name: str


@dataclass(frozen=True)
class _Series:
    study: _Study
    series_number: int
    series_instance_uid: str
    frame_of_reference_uid: str
    view: str
    number_of_instances: int
    rows: int
    columns: int


@dataclass(frozen=True)
class _Instance:
    series: _Series
    instance_number: int
    sop_instance_uid: str
    relative_path: Path


# --- Public API -------------------------------------------------------------------------


def generate_demo_data(
    output_dir: Path,
    *,
    patients: int = 12,
    seed: int = 2026,
    ct_slices: int = 40,
    progress: Callable[[int, int], None] | None = None,
) -> DemoDataSummary:
    """Write a synthetic paediatric data set as DICOM Part 10 files under output_dir."""
    rng = np.random.default_rng([seed, 0])
    people = _plan_patients("demo", seed, patients, rng)
    studies = [
        study for person in people for study in _plan_studies("demo", seed, person, patients, rng)
    ]
    series = [each for study in studies for each in _plan_series("demo", seed, study, ct_slices)]
    instances = [each for one in series for each in _plan_instances("demo", seed, one)]
    files = _write_all(output_dir, instances, seed, progress)
    return DemoDataSummary(
        files=tuple(files),
        patients=len(people),
        studies=len(studies),
        series=len(series),
        instances=len(instances),
        total_bytes=sum(path.stat().st_size for path in files),
    )


def generate_small_instances(
    output_dir: Path, count: int, *, seed: int = 7, per_study: int = 50
) -> list[Path]:
    """Many small 64x64 DX instances for ingest benchmarks, in studies of per_study instances.

    Studies are spread over up to ten patients, each study holding one series.
    """
    if per_study < 1:
        raise ValueError("per_study must be at least 1")
    if count < 1:
        return []
    rng = np.random.default_rng([seed, 1])
    study_count = math.ceil(count / per_study)
    people = _plan_patients("small", seed, min(study_count, 10), rng)
    protocol = next(p for p in PROTOCOLS if p.body_part_examined == "HAND")
    instances: list[_Instance] = []
    for index in range(study_count):
        person = people[index % len(people)]
        # Each patient comes back weekly after the first study.
        age_days = person.first_age_days + 7 * (index // len(people))
        study_date = person.patient_birth_date + timedelta(days=age_days)
        study = _make_study("small", seed, person, protocol, index, study_date, rng)
        size = min(per_study, count - index * per_study)
        one = _make_series("small", seed, study, 1, "PA", size, (64, 64))
        instances.extend(_plan_instances("small", seed, one))
    return _write_all(output_dir, instances, seed, None)


def generate_ct_series(
    output_dir: Path, slices: int = 300, *, seed: int = 11, rows: int = 512, columns: int = 512
) -> list[Path]:
    """One CT series of `slices` 512x512x16-bit slices (~512 KiB each) for benchmarks."""
    rng = np.random.default_rng([seed, 2])
    person = _plan_patients("ct", seed, 2, rng)[-1]
    protocol = next(p for p in PROTOCOLS if p.modality == "CT")
    study_date = person.patient_birth_date + timedelta(days=person.first_age_days)
    study = _make_study("ct", seed, person, protocol, 0, study_date, rng)
    series = _make_series("ct", seed, study, 1, "", slices, (rows, columns))
    return _write_all(output_dir, _plan_instances("ct", seed, series), seed, None)


# --- Planning the hierarchy -------------------------------------------------------------


def _uid(namespace: str, seed: int, *parts: object) -> str:
    """A UID hashed from the data set, seed and position, so reruns give the same UIDs."""
    key = "/".join(str(part) for part in (namespace, seed, *parts))
    return str(generate_uid(UID_ROOT, [key]))


def _digits(namespace: str, seed: int, width: int) -> int:
    """A stable number of `width` digits (no leading zero) for identifiers of one data set."""
    value = int(hashlib.sha256(f"{namespace}/{seed}".encode()).hexdigest(), 16)
    low = int(10 ** (width - 1))
    return low + value % (9 * low - 10_000)  # room for 10,000 consecutive values


def _first_age_days(index: int, count: int, rng: np.random.Generator) -> int:
    """Ages rise quadratically from a neonate (index 0) to a teenager (the last index)."""
    if index == 0:
        return int(rng.integers(2, 7))
    fraction = (index / (count - 1)) ** 2
    jitter = float(rng.uniform(0.9, 1.0))
    return max(8, int(MAX_FIRST_AGE_DAYS * fraction * jitter))


def _random_date(rng: np.random.Generator, margin_days: int = 0) -> date:
    span = (LAST_STUDY_DATE - FIRST_STUDY_DATE).days - margin_days
    return FIRST_STUDY_DATE + timedelta(days=int(rng.integers(span)))


def _plan_patients(
    namespace: str, seed: int, count: int, rng: np.random.Generator
) -> list[_Patient]:
    if count < 1:
        raise ValueError("at least one patient is needed")
    families = [_FAMILY_NAMES[0], *rng.permutation(_FAMILY_NAMES[1:]).tolist()]
    first_id = _digits(f"{namespace}/patient", seed, 7)
    people = []
    for index in range(count):
        sex = "F" if rng.random() < 0.5 else "M"
        given = _GIVEN_NAMES[sex][int(rng.integers(len(_GIVEN_NAMES[sex])))]
        first_age_days = _first_age_days(index, count, rng)
        first_study_date = _random_date(rng, margin_days=2 * MAX_FOLLOW_UP_GAP_DAYS)
        people.append(
            _Patient(
                index=index,
                patient_name=f"{families[index % len(families)]}^{given}",
                patient_id=f"PED{first_id + index}",
                patient_birth_date=first_study_date - timedelta(days=first_age_days),
                patient_sex=sex,
                first_age_days=first_age_days,
            )
        )
    return people


def _required_modality(index: int, count: int) -> str | None:
    """Which modality a patient's first study must be, so that every modality appears."""
    if index == 0:
        return "US"  # the neonate
    if index == count - 1:
        return "CT"  # the teenager
    if index == count - 2:
        return "DX"
    return "CR" if index == 1 else None


def _study_ages(person: _Patient, rng: np.random.Generator) -> list[int]:
    """Ages in days at one to three studies; babies come back sooner than older children."""
    ages = [person.first_age_days]
    for _ in range(int(rng.integers(0, 3))):
        age = ages[-1]
        gap = (3, 15) if age < 28 else (14, 120) if age < 365 else (30, MAX_FOLLOW_UP_GAP_DAYS)
        ages.append(age + int(rng.integers(*gap)))
    return ages


def _choose_protocol(age_days: int, modality: str | None, rng: np.random.Generator) -> _Protocol:
    fitting = [p for p in PROTOCOLS if p.min_age_days <= age_days <= p.max_age_days]
    required = [p for p in fitting if p.modality == modality]
    candidates = required or [p for p in fitting if p.weight > 0]
    weights = np.array([max(p.weight, 1) for p in candidates], dtype=float)
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def _plan_studies(
    namespace: str, seed: int, person: _Patient, count: int, rng: np.random.Generator
) -> list[_Study]:
    studies = []
    for number, age_days in enumerate(_study_ages(person, rng)):
        required = _required_modality(person.index, count) if number == 0 else None
        protocol = _choose_protocol(age_days, required, rng)
        study_date = person.patient_birth_date + timedelta(days=age_days)
        index = person.index * 3 + number  # at most three studies per patient
        studies.append(_make_study(namespace, seed, person, protocol, index, study_date, rng))
    return studies


def _make_study(
    namespace: str,
    seed: int,
    person: _Patient,
    protocol: _Protocol,
    index: int,
    study_date: date,
    rng: np.random.Generator,
) -> _Study:
    accession = _digits(f"{namespace}/accession", seed, 8) + index
    return _Study(
        patient=person,
        protocol=protocol,
        index=index,
        study_instance_uid=_uid(namespace, seed, "study", index),
        accession_number=f"A{accession}",
        study_date=study_date,
        study_seconds=int(rng.integers(8 * 3600, 19 * 3600)),
        referring_physician_name=_REFERRING_PHYSICIANS[
            int(rng.integers(len(_REFERRING_PHYSICIANS)))
        ],
    )


def _plan_series(namespace: str, seed: int, study: _Study, ct_slices: int) -> list[_Series]:
    protocol = study.protocol
    if protocol.modality == "CT":
        return [_make_series(namespace, seed, study, 1, "", ct_slices, (256, 256))]
    if protocol.modality == "US":
        return [_make_series(namespace, seed, study, 1, "", 1, (240, 320))]
    shape = (480, 400) if protocol.body_part_examined == "CHEST" else (400, 320)
    return [
        _make_series(namespace, seed, study, number, view, 1, shape)
        for number, view in enumerate(protocol.views, start=1)
    ]


def _make_series(
    namespace: str,
    seed: int,
    study: _Study,
    number: int,
    view: str,
    size: int,
    shape: tuple[int, int],
) -> _Series:
    return _Series(
        study=study,
        series_number=number,
        series_instance_uid=_uid(namespace, seed, "series", study.index, number),
        frame_of_reference_uid=_uid(namespace, seed, "frame-of-reference", study.index, number),
        view=view,
        number_of_instances=size,
        rows=shape[0],
        columns=shape[1],
    )


def _plan_instances(namespace: str, seed: int, series: _Series) -> list[_Instance]:
    study = series.study
    # Opaque path: indices only, no names or identifiers of the patient.
    folder = Path(
        f"p{study.patient.index:04d}", f"s{study.index:04d}", f"se{series.series_number:03d}"
    )
    return [
        _Instance(
            series=series,
            instance_number=number,
            sop_instance_uid=_uid(
                namespace, seed, "instance", study.index, series.series_number, number
            ),
            relative_path=folder / f"{number:05d}.dcm",
        )
        for number in range(1, series.number_of_instances + 1)
    ]


# --- Writing ----------------------------------------------------------------------------


def _write_all(
    output_dir: Path,
    instances: list[_Instance],
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> list[Path]:
    builders = {"CT": _ct_dataset, "CR": _cr_dataset, "DX": _dx_dataset, "US": _us_dataset}
    written = []
    for done, instance in enumerate(instances, start=1):
        series = instance.series
        rng = np.random.default_rng(
            [seed, series.study.index, series.series_number, instance.instance_number]
        )
        dataset = builders[series.study.protocol.modality](instance, rng)
        path = output_dir / instance.relative_path
        _write_part10(dataset, path)
        written.append(path)
        if progress is not None:
            progress(done, len(instances))
    return written


def _write_part10(dataset: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    dataset.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


def _da(value: date) -> str:
    return value.strftime("%Y%m%d")


def _tm(seconds: int) -> str:
    seconds = min(seconds, 86_399)  # very long series end at midnight rather than overflow
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def _ds(value: float) -> str:
    """A decimal string short enough for DS (16 characters) and free of float noise."""
    return f"{value:.6g}"


def _patient_weight(age_days: int, patient_id: str) -> str:
    """Weight in kg along a growth chart; each child keeps its own centile (within 15 %)."""
    years = (0.0, 0.5, 1.0, 2.0, 5.0, 8.0, 10.0, 12.0, 14.0, 18.0)
    kilograms = (3.4, 7.6, 9.6, 12.2, 18.5, 25.6, 32.0, 40.5, 50.0, 64.0)
    typical = float(np.interp(age_days / 365.25, years, kilograms))
    centile = 1 + (int(patient_id[3:]) % 31 - 15) / 100
    return _ds(round(typical * centile, 1))


# --- Datasets ---------------------------------------------------------------------------


def _base_dataset(instance: _Instance, sop_class_uid: str) -> Dataset:
    """The Patient, Study, Series, Equipment, General Image and SOP Common modules."""
    series = instance.series
    study = series.study
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = instance.sop_instance_uid
    _add_patient_and_study(ds, study)
    # Series start a few minutes apart; images follow within the series.
    series_seconds = study.study_seconds + 300 * series.series_number
    content_seconds = series_seconds + instance.instance_number
    ds.InstanceCreationDate = ds.SeriesDate = ds.ContentDate = _da(study.study_date)
    ds.AcquisitionDate = _da(study.study_date)
    ds.InstanceCreationTime = ds.ContentTime = ds.AcquisitionTime = _tm(content_seconds)
    ds.SeriesTime = _tm(series_seconds)
    ds.Modality = study.protocol.modality
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.SeriesNumber = series.series_number
    # Radiographs get one series per view, named after it.
    view = f"{study.protocol.body_part_examined.title()} {series.view}"
    ds.SeriesDescription = view if series.view else study.protocol.study_description
    ds.BodyPartExamined = study.protocol.body_part_examined
    ds.OperatorsName = "Radiographer^Demo"
    ds.InstanceNumber = instance.instance_number
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    _add_equipment(ds, study.protocol.modality)
    return ds


def _add_patient_and_study(ds: Dataset, study: _Study) -> None:
    person = study.patient
    age_days = (study.study_date - person.patient_birth_date).days
    ds.PatientName = person.patient_name
    ds.PatientID = person.patient_id
    ds.IssuerOfPatientID = ISSUER_OF_PATIENT_ID
    ds.PatientBirthDate = _da(person.patient_birth_date)
    ds.PatientSex = person.patient_sex
    ds.PatientAge = as_from_dates(person.patient_birth_date, study.study_date)
    ds.PatientWeight = _patient_weight(age_days, person.patient_id)
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = _da(study.study_date)
    ds.StudyTime = _tm(study.study_seconds)
    ds.AccessionNumber = study.accession_number
    ds.StudyID = study.accession_number[1:]
    ds.StudyDescription = study.protocol.study_description
    ds.ReferringPhysicianName = study.referring_physician_name


def _add_equipment(ds: Dataset, modality: str) -> None:
    manufacturer, model, station = _EQUIPMENT[modality]
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.StationName = station
    ds.InstitutionName = INSTITUTION_NAME
    ds.InstitutionalDepartmentName = DEPARTMENT_NAME
    ds.DeviceSerialNumber = f"{modality}-0001"
    ds.SoftwareVersions = IMPLEMENTATION_VERSION_NAME


def _add_pixels(ds: Dataset, pixels: NDArray[np.integer], photometric: str, bits: int) -> None:
    """The Image Pixel module; `pixels` is (rows, columns) or (frames, rows, columns[, 3])."""
    is_colour = photometric == "RGB"
    frame_shape = pixels.shape[-3:-1] if is_colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if is_colour else 1
    ds.PhotometricInterpretation = photometric
    if is_colour:
        ds.PlanarConfiguration = 0  # colour-by-pixel, as the array is laid out
    if pixels.ndim == (4 if is_colour else 3):
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = frame_shape
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()


def _ct_dataset(instance: _Instance, rng: np.random.Generator) -> Dataset:
    """An axial CT Image slice of a child's head, inferior to superior."""
    series = instance.series
    ds = _base_dataset(instance, CT_IMAGE_STORAGE)
    index = instance.instance_number - 1
    spacing = CT_COVERAGE_MM / series.number_of_instances
    pixel_spacing = CT_FIELD_OF_VIEW_MM / series.columns
    z = -CT_COVERAGE_MM / 2 + (index + 0.5) * spacing
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    # The centre of the first pixel, with the field of view centred on the isocentre.
    x = (1 - series.columns) * pixel_spacing / 2
    y = (1 - series.rows) * pixel_spacing / 2
    ds.ImagePositionPatient = [_ds(x), _ds(y), _ds(z)]
    ds.SliceLocation = _ds(z)
    ds.SliceThickness = _ds(spacing)
    ds.PixelSpacing = [_ds(pixel_spacing), _ds(pixel_spacing)]
    # Paediatric head protocol: low kV and mAs.
    ds.KVP = "100"
    ds.XRayTubeCurrent = 120
    ds.ExposureTime = 1000
    ds.CTDIvol = 22.5
    ds.CTDIPhantomTypeCodeSequence = [_code("113691", "IEC Head Dosimetry Phantom", "DCM")]
    ds.ScanOptions = "HELICAL"
    ds.ConvolutionKernel = "H31s"
    ds.ReconstructionDiameter = _ds(CT_FIELD_OF_VIEW_MM)
    ds.DataCollectionDiameter = "500"
    ds.GantryDetectorTilt = "0"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    hounsfield = ct_head_slice(
        rng, series.rows, series.columns, (index + 0.5) / series.number_of_instances
    )
    _add_pixels(ds, (hounsfield + 1024).clip(0, 4095).astype(np.uint16), "MONOCHROME2", 12)
    return ds


def _cr_dataset(instance: _Instance, rng: np.random.Generator) -> Dataset:
    """A Computed Radiography image of one view."""
    series = instance.series
    ds = _base_dataset(instance, CR_IMAGE_STORAGE)
    ds.ViewPosition = series.view
    ds.PatientOrientation = _patient_orientation(series.view)
    ds.KVP = "60"
    ds.ExposureTime = 8
    ds.XRayTubeCurrent = 200
    ds.ImagerPixelSpacing = ["0.4", "0.4"]
    ds.DistanceSourceToDetector = "1000"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "3600"
    pixels = radiograph(
        rng, series.study.protocol.body_part_examined, (series.rows, series.columns)
    )
    _add_pixels(ds, pixels, "MONOCHROME2", 12)
    return ds


def _dx_dataset(instance: _Instance, rng: np.random.Generator) -> Dataset:
    """A Digital X-Ray image, For Presentation, of one view of a limb."""
    series = instance.series
    protocol = series.study.protocol
    ds = _base_dataset(instance, DX_IMAGE_STORAGE_FOR_PRESENTATION)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ViewPosition = series.view
    ds.PatientOrientation = _patient_orientation(series.view)
    ds.ImageLaterality = protocol.laterality or "U"
    ds.AnatomicRegionSequence = [_code(*protocol.anatomy, scheme="SCT")]
    view = _code(*_VIEW_CODES[series.view], scheme="SCT")
    view.ViewModifierCodeSequence = []
    ds.ViewCodeSequence = [view]
    ds.PositionerType = "COLUMN"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = ["0.15", "0.15"]
    ds.KVP = "50"
    ds.AcquisitionContextSequence = []
    ds.WindowCenter = "2048"
    ds.WindowWidth = "3600"
    pixels = radiograph(rng, protocol.body_part_examined, (series.rows, series.columns))
    _add_pixels(ds, pixels, "MONOCHROME2", 12)
    return ds


def _us_dataset(instance: _Instance, rng: np.random.Generator) -> Dataset:
    """An Ultrasound Multi-frame cine clip, grey-scale or with a colour Doppler box."""
    series = instance.series
    protocol = series.study.protocol
    ds = _base_dataset(instance, US_MULTIFRAME_IMAGE_STORAGE)
    # Colour clips are three times the size, so they are kept shorter.
    frames = int(rng.integers(20, 24 if protocol.is_colour else 33))
    ds.ImageType = ["ORIGINAL", "PRIMARY", protocol.us_image_type, "0001"]
    ds.PatientOrientation = ""
    ds.LossyImageCompression = "00"
    ds.FrameTime = "40"
    ds.CineRate = 25
    ds.RecommendedDisplayFrameRate = 25
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.SequenceOfUltrasoundRegions = [_ultrasound_region(series.rows, series.columns)]
    clip = ultrasound_clip(rng, frames, series.rows, series.columns, protocol.is_colour)
    _add_pixels(ds, clip, "RGB" if protocol.is_colour else "MONOCHROME2", 8)
    return ds


# View Position to SNOMED CT code and meaning (CID 4010).
_VIEW_CODES = {
    "AP": ("399348003", "antero-posterior"),
    "PA": ("272479007", "postero-anterior"),
    "LL": ("399173006", "left lateral"),
    "RL": ("399198007", "right lateral"),
}


def _patient_orientation(view: str) -> list[str]:
    """Row and column directions as a radiograph is conventionally hung."""
    return ["P", "F"] if view in {"LL", "RL"} else ["L", "F"]


def _code(value: str, meaning: str, scheme: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _ultrasound_region(rows: int, columns: int) -> Dataset:
    """One 2D tissue region calibrated in cm, so viewers can measure."""
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = columns - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = US_CM_PER_PIXEL
    region.PhysicalDeltaY = US_CM_PER_PIXEL
    return region
