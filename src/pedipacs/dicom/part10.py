"""Give a bare dataset (no preamble, no File Meta) the Part 10 header it lacks, without touching
the dataset's own bytes."""

from __future__ import annotations

import hashlib
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pedipacs.errors import NotDicomError

PREAMBLE = b"\x00" * 128
MAGIC = b"DICM"


def is_part10(data: bytes) -> bool:
    return data[128:132] == MAGIC


def part10_from_bytes(data: bytes) -> bytes:
    """Return `data` unchanged if it is a Part 10 file, else the same dataset bytes behind a
    generated preamble and File Meta Information (little endian implicit or explicit VR)."""
    if is_part10(data):
        return data
    try:
        dataset = dcmread(
            BytesIO(data),
            force=True,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
        is_implicit = bool(dataset.original_encoding[0])
        sop_class = UID(str(dataset.SOPClassUID))
        sop_instance = UID(str(dataset.SOPInstanceUID))
    except Exception as error:  # anything unreadable is "not DICOM"
        raise NotDicomError(f"not a readable DICOM object: {error}") from error
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if is_implicit else ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = BytesIO()
    buffer.write(PREAMBLE + MAGIC)
    write_file_meta_info(buffer, meta, enforce_standard=True)  # type: ignore[arg-type]
    return buffer.getvalue() + data


def dataset_offset(data: bytes) -> int:
    """Where the dataset starts in a Part 10 file: after the preamble and the File Meta group.

    Uses (0002,0000) File Meta Information Group Length, which PS3.10 makes mandatory.
    """
    if not is_part10(data):
        return 0
    position = 132
    if (
        data[position : position + 4] != b"\x02\x00\x00\x00"
        or data[position + 4 : position + 6] != b"UL"
    ):
        raise NotDicomError("the File Meta Information has no group length")
    group_length = int.from_bytes(data[position + 8 : position + 12], "little")
    return position + 12 + group_length


def dataset_sha256(data: bytes) -> str:
    """SHA-256 of the dataset alone: the same object re-sent through another door (with other
    File Meta) is recognised as identical."""
    return hashlib.sha256(memoryview(data)[dataset_offset(data) :]).hexdigest()
