"""Hostile zip files given to `pedipacs import`: each bad entry (or zip) is refused with its
reason in the summary, the good entries beside it are imported, and nothing crashes."""

from __future__ import annotations

import struct
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from pedipacs.archive.file_import import (
    MAX_ZIP_RATIO,
    ZIP_RATIO_FREE_BYTES,
    ImportService,
    ImportSummary,
    _read_bounded,
)
from pedipacs.errors import UnsafeArchiveError
from pedipacs.model.origin import Origin
from pedipacs.node import Node
from support.files import PYDICOM_TEST_FILES

ORIGIN = Origin.cli("tests")
CT = (PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()
MR = (PYDICOM_TEST_FILES / "MR_small.dcm").read_bytes()
# Refused at ingest (its File Meta contradicts it): fine where an entry is refused unread.
RTDOSE = (PYDICOM_TEST_FILES / "rtdose.dcm").read_bytes()
JPEG2000 = (PYDICOM_TEST_FILES / "JPEG2000.dcm").read_bytes()


def write_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def run_import(node: Node, paths: list[Path], **options: int) -> ImportSummary:
    service = ImportService(node.ingest, max_object_size=node.settings.max_object_size, **options)
    return service.run(service.collect(paths), ORIGIN)


def reasons(summary: ImportSummary) -> dict[str, str]:
    return {source.rsplit("!", 1)[-1]: reason for source, reason in summary.refused}


def state_size(path: Path, name: str, file_size: int) -> None:
    """Make the zip's headers (central directory and local) state `file_size` for `name`."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (name_length,) = struct.unpack("<H", data[at + 28 : at + 30])
        if data[at + 46 : at + 46 + name_length] == name.encode():
            struct.pack_into("<L", data, at + 24, file_size)
            (local,) = struct.unpack("<L", data[at + 42 : at + 46])
            struct.pack_into("<L", data, local + 22, file_size)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} is not in {path}")


def test_hostile_entries_are_refused_with_their_reasons_and_good_ones_imported(
    node: Node, tmp_path: Path
) -> None:
    inner = BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.writestr("inside.dcm", RTDOSE)
    bomb = b"\x00" * (2 * ZIP_RATIO_FREE_BYTES)  # zeros deflate ~1000 times
    archive = write_zip(
        tmp_path / "hostile.zip",
        [
            ("good/ct.dcm", CT),
            ("../../escape.dcm", RTDOSE),
            ("/absolute.dcm", RTDOSE),
            ("a\\..\\..\\windows.dcm", RTDOSE),
            ("C:/drive.dcm", RTDOSE),
            ("bomb.dcm", bomb),
            ("nested.zip", inner.getvalue()),
            ("nested-in-disguise.dcm", inner.getvalue()),
            ("DICOMDIR", b"skipped, not imported"),
            ("good/mr.dcm", MR),
        ],
    )

    summary = run_import(node, [archive])

    assert summary.stored == 2
    refused = reasons(summary)
    assert sorted(refused) == sorted(
        [
            "../../escape.dcm",
            "/absolute.dcm",
            "a\\..\\..\\windows.dcm",
            "C:/drive.dcm",
            "bomb.dcm",
            "nested.zip",
            "nested-in-disguise.dcm",
        ]
    )
    assert all(reason.startswith("UnsafeArchiveError: ") for reason in refused.values())
    for name in ("../../escape.dcm", "/absolute.dcm", "a\\..\\..\\windows.dcm", "C:/drive.dcm"):
        assert "climbing out" in refused[name]
    assert f"more than {MAX_ZIP_RATIO} times: a zip bomb" in refused["bomb.dcm"]
    assert "zip inside a zip" in refused["nested.zip"]
    assert "zip inside a zip" in refused["nested-in-disguise.dcm"]
    # Nothing was written under the names: the import extracts nothing to disk.
    assert not (tmp_path.parent / "escape.dcm").exists()


def test_a_zip_with_too_many_entries_is_refused_whole_and_the_next_zip_imported(
    node: Node, tmp_path: Path
) -> None:
    crowded = write_zip(
        tmp_path / "crowded.zip", [(f"{n}.dcm", data) for n, data in enumerate((CT, MR, RTDOSE))]
    )
    fine = write_zip(tmp_path / "fine.zip", [("ct.dcm", CT), ("mr.dcm", MR)])

    summary = run_import(node, [crowded, fine], max_zip_entries=2)

    assert summary.stored == 2
    assert summary.refused == [
        (
            str(crowded),
            f"UnsafeArchiveError: the zip states 3 entries in a "
            f"{_central_directory_bytes(crowded)} byte directory; at most 2 are read from one "
            "zip: split it",
        )
    ]


def test_an_end_record_understating_the_entries_does_not_lift_the_cap(
    node: Node, tmp_path: Path
) -> None:
    crowded = write_zip(
        tmp_path / "crowded.zip", [(f"{n}.dcm", data) for n, data in enumerate((CT, MR, RTDOSE))]
    )
    data = bytearray(crowded.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "1 entry on this disk, 1 in all"
    crowded.write_bytes(bytes(data))

    summary = run_import(node, [crowded], max_zip_entries=2)

    assert summary.stored == 0
    assert summary.refused == [
        (
            str(crowded),
            "UnsafeArchiveError: the zip holds 3 entries; at most 2 are read from one zip",
        )
    ]


@pytest.mark.parametrize("stated", [1000, len(JPEG2000) + 1000])
def test_an_entry_whose_header_misstates_its_size_is_refused(
    node: Node, tmp_path: Path, stated: int
) -> None:
    archive = write_zip(tmp_path / "lying.zip", [("lying.dcm", JPEG2000), ("ct.dcm", CT)])
    state_size(archive, "lying.dcm", stated)

    summary = run_import(node, [archive])

    assert summary.stored == 1
    (reason,) = reasons(summary).values()
    assert reason.startswith("UnsafeArchiveError: ")


def test_a_header_understating_a_bomb_does_not_let_it_expand(node: Node, tmp_path: Path) -> None:
    # The header states 1,000 bytes, so the ratio check passes; the read stops there anyway.
    archive = write_zip(tmp_path / "sly.zip", [("sly.dcm", b"\x00" * (64 * 1024**2))])
    state_size(archive, "sly.dcm", 1000)

    summary = run_import(node, [archive])

    assert summary.stored == 0
    assert reasons(summary)["sly.dcm"].startswith("UnsafeArchiveError: unreadable entry")


def test_the_bounded_reader_stops_at_its_limit_whatever_the_stream_holds() -> None:
    with pytest.raises(UnsafeArchiveError, match="more than the 10 bytes"):
        _read_bounded(BytesIO(b"x" * 10_000_000), 10, 10)
    with pytest.raises(UnsafeArchiveError, match="holds 5 bytes, its header states 10"):
        _read_bounded(BytesIO(b"x" * 5), 10, 10)
    assert _read_bounded(BytesIO(b"x" * 10), 10, 10) == b"x" * 10


def test_entries_sharing_a_name_are_each_read(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "twins.zip"
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(path, "w") as archive,
    ):
        archive.writestr("image.dcm", CT)
        archive.writestr("image.dcm", MR)

    summary = run_import(node, [path])

    assert (summary.stored, summary.refused) == (2, [])


def test_a_damaged_zip_is_refused_without_stopping_the_import(node: Node, tmp_path: Path) -> None:
    damaged = write_zip(tmp_path / "damaged.zip", [("ct.dcm", CT), ("mr.dcm", MR)])
    data = damaged.read_bytes()
    directory = data.find(b"PK\x01\x02")
    damaged.write_bytes(data[:directory] + b"\x00" * 8 + data[directory + 8 :])
    single = tmp_path / "jpeg2000.dcm"
    single.write_bytes(JPEG2000)

    summary = run_import(node, [damaged, single])

    assert summary.stored == 1
    assert summary.refused[0][0] == str(damaged)
    assert summary.refused[0][1].startswith("UnsafeArchiveError: unreadable zip file")


def test_control_characters_in_names_are_not_printed(node: Node, tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "ansi.zip", [("\x1b[2Jwiped.dcm", b"not dicom")])

    summary = run_import(node, [archive])

    assert summary.refused[0][0].endswith("!?[2Jwiped.dcm")


def _central_directory_bytes(path: Path) -> int:
    data = path.read_bytes()
    end = data.rfind(b"PK\x05\x06")
    (size,) = struct.unpack("<L", data[end + 12 : end + 16])
    return int(size)
