"""What a DICOM file is, as the tests need to know it: identity, transfer syntax, dataset bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom.data
from pydicom import dcmread

from pedipacs.dicom.part10 import dataset_offset
from pedipacs.model.identifiers import is_valid_uid

PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
# Files DCMTK's storescu itself refuses to send (truncated or corrupt beyond what it tolerates).
UNSENDABLE_BY_DCMTK = {
    "MR_truncated.dcm",
    "rtplan_truncated.dcm",
    "SC_rgb_jpeg.dcm",
    "rtdose_rle.dcm",
    "rtdose_rle_1frame.dcm",
}


@dataclass(frozen=True)
class DicomFile:
    path: Path
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str

    @property
    def dataset_bytes(self) -> bytes:
        data = self.path.read_bytes()
        return data[dataset_offset(data) :]

    @property
    def has_valid_identity(self) -> bool:
        return all(
            is_valid_uid(uid)
            for uid in (self.sop_instance_uid, self.study_instance_uid, self.series_instance_uid)
        )


def describe(path: Path) -> DicomFile | None:
    """The file's identity, or None if it is not a Part 10 file with SOP class and instance."""
    try:
        dataset = dcmread(path, stop_before_pixels=True)
        return DicomFile(
            path=path,
            transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
            sop_class_uid=str(dataset.SOPClassUID),
            sop_instance_uid=str(dataset.SOPInstanceUID),
            study_instance_uid=str(dataset.get("StudyInstanceUID", "") or ""),
            series_instance_uid=str(dataset.get("SeriesInstanceUID", "") or ""),
        )
    except Exception:
        return None


def pydicom_test_files() -> list[DicomFile]:
    """Every file shipped inside pydicom that a DICOM sender can send, in a stable order."""
    files = []
    for path in sorted(PYDICOM_TEST_FILES.glob("*.dcm")):
        if path.name in UNSENDABLE_BY_DCMTK:
            continue
        described = describe(path)
        if described is not None:
            files.append(described)
    return files
