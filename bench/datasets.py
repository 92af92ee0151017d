"""The benchmark's data sets, written once and cached under the data folder.

* the CT series comes from `pedipacs.demo.generator.generate_ct_series`;
* the small-instance sets (one 64x64 DX instance per study) start from one instance written by
  `generate_small_instances` and vary its identifiers, so that patient names are controlled:
  the C-FIND by PatientName `LAST^F*` then has a known number of hits (282 in 40,000 studies).

Every set is split into four folders, one per association of the parallel C-STORE runs. A
`manifest.json` is written last; a set without one (an interrupted run) is written again.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from pedipacs.demo.generator import generate_ct_series, generate_small_instances

PARTS = 4
UID_ROOT = "1.2.826.0.1.3680043.8.498."
NAME_QUERY = "LAST^F*"
# In 20,000 patients (40,000 studies, two per patient), 141 are named LAST^F...: 282 hits.
HIT_PATIENTS_PER_20000 = 141
STUDIES_PER_PATIENT = 2
FORMAT_VERSION = 1

_F_GIVEN = ("FREYA", "FELIX", "FATIMA", "FINN", "FLORA", "FARID")
_OTHER_GIVEN = ("AMARA", "JONAS", "LENA", "MATEO", "NOAH", "SOFIA", "ZOE", "RAVI", "MEI", "ELIAS")
# LAST with another given name, and LASTRA/LASTOVKA with F names, must not match LAST^F*.
_FAMILIES = (
    "LAST", "LASTRA", "LASTOVKA", "MUELLER", "OKAFOR", "NGUYEN", "SORENSEN", "NUNEZ",
    "FITZGERALD", "KOWALSKI", "HADDAD", "LEFEVRE", "TANAKA", "ANDERSSON", "MENSAH", "ROSSI",
)  # fmt: skip


@dataclass(frozen=True)
class CtSeries:
    """One CT series split into PARTS folders."""

    root: Path
    slices: int
    total_bytes: int
    study_instance_uid: str
    series_instance_uid: str

    @property
    def parts(self) -> list[Path]:
        return [self.root / f"part-{number}" for number in range(PARTS)]


@dataclass(frozen=True)
class StudySet:
    """`count` studies of one small instance each, split into PARTS folders."""

    root: Path
    count: int
    total_bytes: int
    name_query: str
    name_hits: int
    patient_id: str
    patient_id_hits: int

    @property
    def parts(self) -> list[Path]:
        return [self.root / f"part-{number}" for number in range(PARTS)]


def ct_series(data_dir: Path, slices: int) -> CtSeries:
    """The CT series of `slices` 512x512x16-bit slices, generated on first use."""
    root = data_dir / f"ct-{slices}"
    cached = _read_manifest(root)
    if cached is not None:
        return CtSeries(root=root, **cached)
    _clear(root)
    scratch = root / "generated"
    files = sorted(generate_ct_series(scratch, slices))
    _move_into_parts(root, files)
    shutil.rmtree(scratch)
    first = dcmread(root / "part-0" / "000000.dcm", stop_before_pixels=True)
    series = CtSeries(
        root=root,
        slices=slices,
        total_bytes=_total_bytes(root),
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=str(first.SeriesInstanceUID),
    )
    _write_manifest(root, series)
    return series


def study_set(data_dir: Path, count: int, namespace: str) -> StudySet:
    """`count` one-instance studies whose identifiers derive from `namespace`."""
    root = data_dir / f"studies-{count}-{namespace}"
    cached = _read_manifest(root)
    if cached is not None:
        return StudySet(root=root, **cached)
    _clear(root)
    template = _template_instance()
    writer = _StudyWriter(template, namespace, count)
    for part in range(PARTS):
        (root / f"part-{part}").mkdir(parents=True)
    for index in range(count):
        part = index * PARTS // count
        writer.write(index, root / f"part-{part}" / f"{index:07d}.dcm")
    studies = StudySet(
        root=root,
        count=count,
        total_bytes=_total_bytes(root),
        name_query=NAME_QUERY,
        name_hits=writer.name_hits,
        patient_id=writer.patient_id(writer.probe_patient),
        patient_id_hits=writer.probe_hits,
    )
    _write_manifest(root, studies)
    return studies


class _StudyWriter:
    """Writes study `index` as a copy of the template with its own identifiers."""

    def __init__(self, template: Dataset, namespace: str, count: int) -> None:
        self._dataset = template
        digest = hashlib.sha256(namespace.encode()).hexdigest()
        self._uid_base = f"{UID_ROOT}{int(digest[:10], 16)}."
        self._id_prefix = f"B{int(digest[10:15], 16) % 10_000:04d}"
        self._random = random.Random(digest)  # names, not secrets
        patients = -(-count // STUDIES_PER_PATIENT)
        self.probe_patient = patients // 2
        self.probe_hits = 0
        self.name_hits = 0
        self._names = [self._name(number) for number in range(patients)]

    def patient_id(self, patient: int) -> str:
        return f"{self._id_prefix}{patient:07d}"

    def _name(self, patient: int) -> str:
        is_hit = (patient + 1) * HIT_PATIENTS_PER_20000 // 20_000 > (
            patient * HIT_PATIENTS_PER_20000 // 20_000
        )
        if is_hit:
            return f"LAST^{self._random.choice(_F_GIVEN)}"
        family = self._random.choice(_FAMILIES)
        given = self._random.choice(_OTHER_GIVEN if family == "LAST" else _F_GIVEN + _OTHER_GIVEN)
        return f"{family}^{given}"

    def write(self, index: int, path: Path) -> None:
        ds = self._dataset
        patient = index // STUDIES_PER_PATIENT
        name = self._names[patient]
        self.name_hits += name.startswith("LAST^F")
        self.probe_hits += patient == self.probe_patient
        study_date = date(2021, 1, 4) + timedelta(days=index % 1800)
        ds.PatientName = name
        ds.PatientID = self.patient_id(patient)
        ds.StudyInstanceUID = f"{self._uid_base}1.{index + 1}"
        ds.SeriesInstanceUID = f"{self._uid_base}2.{index + 1}"
        ds.SOPInstanceUID = f"{self._uid_base}3.{index + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.AccessionNumber = f"{self._id_prefix}{index:08d}"
        ds.StudyID = f"{index + 1}"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
        ds.AcquisitionDate = ds.InstanceCreationDate = ds.StudyDate
        ds.save_as(path, enforce_file_format=True)


def _template_instance() -> Dataset:
    with tempfile.TemporaryDirectory(prefix="pedipacs-bench-") as scratch:
        (path,) = generate_small_instances(Path(scratch), 1, per_study=1)
        template = dcmread(path)
    # Every study falls after this birth date; the age attribute would no longer match.
    template.PatientBirthDate = "20200101"
    del template.PatientAge
    return template


def _move_into_parts(root: Path, files: list[Path]) -> None:
    """Files split in PARTS consecutive runs, renamed by position."""
    for part in range(PARTS):
        (root / f"part-{part}").mkdir(parents=True)
    for index, path in enumerate(files):
        part = index * PARTS // len(files)
        path.rename(root / f"part-{part}" / f"{index:06d}.dcm")


def _total_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*.dcm"))


def _clear(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)


def _read_manifest(root: Path) -> dict[str, Any] | None:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    fields: dict[str, Any] = json.loads(manifest.read_text())
    if fields.pop("format_version", None) != FORMAT_VERSION:
        return None
    return fields


def _write_manifest(root: Path, data_set: CtSeries | StudySet) -> None:
    fields = {key: value for key, value in asdict(data_set).items() if key != "root"}
    fields["format_version"] = FORMAT_VERSION
    (root / "manifest.json").write_text(json.dumps(fields, indent=2) + "\n")
