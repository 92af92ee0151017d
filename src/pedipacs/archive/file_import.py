"""ImportService: folders, zip files and DICOMDIRs go through the one ingest path.

Zip files come from outside (a study copied from another hospital's CD, a parent's download)
and are read as hostile. Nothing is extracted to disk: an entry's name is only a label in the
import summary, and a name that is absolute or climbs out with `..` is refused. The number of
entries is capped before zipfile parses the central directory; an entry is refused when its
header states more than the object size limit or a compression ratio no DICOM object reaches,
and is read through a bounded reader that stops at the size its header states, so a header that
lies cannot make the read larger. A zip inside a zip is not opened (no recursion): it is refused
with its reason, to be extracted and imported on its own. Every refusal is one line of the
import summary with its reason; the other entries still import.
"""

from __future__ import annotations

import lzma
import os
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from struct import unpack
from typing import IO

from pydicom import dcmread
from pydicom.fileset import FileSet

from pedipacs.archive.ingest import IngestService
from pedipacs.dicom.part10 import part10_from_bytes
from pedipacs.errors import (
    InvalidInput,
    ObjectTooLargeError,
    PedipacsError,
    UnsafeArchiveError,
)
from pedipacs.model.origin import Origin
from pedipacs.model.records import StoreOutcome

DICOMDIR_NAME = "DICOMDIR"
MEDIA_STORAGE_DIRECTORY = b"1.2.840.10008.1.3.10"
# The entries one zip may hold. A study's CD or DVD holds hundreds to a few thousand files; a
# larger export is split into several zips (zipfile parses the whole central directory first).
MAX_ZIP_ENTRIES = 100_000
# Central directory bytes allowed per entry, checked before zipfile parses (and holds) it: a
# 46-byte record plus name, extra fields and comment, 100-200 bytes in real zips.
MAX_CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024
# An entry larger than ZIP_RATIO_FREE_BYTES may expand at most this many times its compressed
# size: deflate gains 2-10x on DICOM, so 200x is padding or a zip bomb. Small entries are free.
MAX_ZIP_RATIO = 200
ZIP_RATIO_FREE_BYTES = 8 * 1024**2
READ_CHUNK = 1024**2

_LOCAL_FILE_HEADER = b"PK\x03\x04"  # how every zip file starts (APPNOTE 4.3.7)
_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"  # APPNOTE 4.3.16: 22 bytes and a comment
_ZIP64_END_OF_CENTRAL_DIRECTORY = b"PK\x06\x06"  # APPNOTE 4.3.14: 56 bytes in version 1
_ZIP64_LOCATOR = b"PK\x06\x07"  # APPNOTE 4.3.15: 20 bytes, just before the end record
_END_SIZE, _ZIP64_END_SIZE, _ZIP64_LOCATOR_SIZE, _MAX_COMMENT = 22, 56, 20, 0xFFFF
# What reading a damaged or hostile entry raises, besides OSError (reported as unreadable).
_ENTRY_ERRORS = (
    zipfile.BadZipFile,  # bad CRC, a local header that contradicts the central directory
    zlib.error,
    lzma.LZMAError,
    EOFError,  # the compressed data ends before the size the header states
    NotImplementedError,  # a compression method zipfile does not know
    RuntimeError,  # encrypted
    ValueError,
)


@dataclass
class ImportSummary:
    stored: int = 0
    duplicates: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + len(self.refused)


@dataclass(frozen=True, slots=True)
class ImportItem:
    """One object to import: where it comes from and how to read its bytes."""

    source: str
    size: int
    read: Callable[[], bytes]


class ImportService:
    def __init__(
        self,
        ingest: IngestService,
        *,
        max_object_size: int,
        max_zip_entries: int = MAX_ZIP_ENTRIES,
    ) -> None:
        self._ingest = ingest
        self._max_object_size = max_object_size
        self._max_zip_entries = max_zip_entries
        self._archives: list[_ZipArchive] = []

    def collect(self, paths: list[Path]) -> list[ImportItem]:
        """Every candidate object under `paths` (folders walked, zips opened, DICOMDIR skipped).

        A zip, a zip entry or a DICOMDIR reference that is refused becomes an item whose read
        raises the reason, so that it is counted and reported like any other refusal.
        """
        items: list[ImportItem] = []
        for path in paths:
            items.extend(self._items(path))
        return items

    def _dicomdir_items(self, path: Path) -> Iterator[ImportItem]:
        root = path.parent.resolve()
        for referenced in _dicomdir_records(path):
            if not referenced.resolve().is_relative_to(root):
                reason = f"the DICOMDIR references a file outside its folder ({root})"
                yield ImportItem(str(referenced), 0, _refuse(InvalidInput(reason)))
            elif referenced.is_file():
                yield self._file_item(referenced)
            else:
                yield ImportItem(str(referenced), 0, _refuse(InvalidInput("listed, missing")))

    def run(
        self,
        items: list[ImportItem],
        origin: Origin,
        *,
        progress: Callable[[int], None] | None = None,
        threads: int = 4,
    ) -> ImportSummary:
        summary = ImportSummary()

        def one(item: ImportItem) -> tuple[ImportItem, StoreOutcome | str]:
            try:
                if item.size > self._max_object_size:
                    raise ObjectTooLargeError(
                        f"{item.size} bytes exceeds the maximum of {self._max_object_size}"
                    )
                return item, self._ingest.ingest(part10_from_bytes(item.read()), origin).outcome
            except PedipacsError as error:
                return item, f"{type(error).__name__}: {error}"
            except OSError as error:
                return item, f"cannot read: {error.strerror or error}"

        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for item, outcome in pool.map(one, items):
                    if not isinstance(outcome, StoreOutcome):  # the refusal's reason
                        summary.refused.append((item.source, outcome))
                    elif outcome is StoreOutcome.STORED or outcome is StoreOutcome.REPLACED:
                        summary.stored += 1
                    else:
                        summary.duplicates += 1
                    if progress:
                        progress(1)
        finally:
            for archive in self._archives:
                archive.close()  # reopened should these items be run again
        return summary

    def _items(self, path: Path, *, in_folder: bool = False) -> Iterator[ImportItem]:
        if path.is_dir():
            for directory, _dirs, files in os.walk(path):
                for name in sorted(files):
                    yield from self._items(Path(directory) / name, in_folder=True)
        elif zipfile.is_zipfile(path):
            yield from self._zip_items(path)
        elif path.is_file():
            if path.name.upper() == DICOMDIR_NAME and _is_dicomdir(path):
                if not in_folder:
                    yield from self._dicomdir_items(path)
                return  # inside a folder walk, the referenced files are found by the walk
            yield self._file_item(path)
        elif in_folder:  # a pipe, socket or device found by the walk: not an object
            yield ImportItem(str(path), 0, _refuse(InvalidInput("not a regular file")))
        else:
            raise InvalidInput(f"{path} is not a file or folder")

    def _file_item(self, path: Path) -> ImportItem:
        limit = self._max_object_size

        def read() -> bytes:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)  # the file may have grown since it was listed
            if len(data) > limit:
                raise ObjectTooLargeError(f"more than the maximum of {limit} bytes")
            return data

        return ImportItem(str(path), path.stat().st_size, read)

    def _zip_items(self, path: Path) -> Iterator[ImportItem]:
        try:
            entries = _zip_entries(path, self._max_zip_entries)
        except UnsafeArchiveError as error:
            yield ImportItem(str(path), 0, _refuse(error))
            return
        archive = _ZipArchive(path)
        self._archives.append(archive)
        for info in entries:
            if info.is_dir():
                continue
            source = f"{path}!{_printable(info.filename)}"
            refusal = _entry_refusal(info)
            if refusal is not None:
                yield ImportItem(source, 0, _refuse(UnsafeArchiveError(refusal)))
            elif Path(info.filename).name.upper() != DICOMDIR_NAME:
                limit = min(info.file_size, self._max_object_size)
                yield ImportItem(source, info.file_size, archive.reader(info, limit))


class _ZipArchive:
    """One zip file, opened at its first read and shared by the readers of its entries (an open
    ZipFile reads its members safely from several threads); closed when the run ends."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._zip: zipfile.ZipFile | None = None

    def reader(self, info: zipfile.ZipInfo, limit: int) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                with self._open(info) as entry:
                    data = _read_bounded(entry, info.file_size, limit)
            except _ENTRY_ERRORS as error:
                raise UnsafeArchiveError(f"unreadable entry: {error}") from error
            if data.startswith(_LOCAL_FILE_HEADER):
                raise UnsafeArchiveError(
                    "a zip inside a zip is not opened; extract it and import it on its own"
                )
            return data

        return read

    def _open(self, info: zipfile.ZipInfo) -> IO[bytes]:
        with self._lock:
            if self._zip is None:
                self._zip = zipfile.ZipFile(self._path)
            return self._zip.open(info)  # by its ZipInfo: two entries may share a name

    def close(self) -> None:
        with self._lock:
            if self._zip is not None:
                self._zip.close()
                self._zip = None


def _zip_entries(path: Path, max_entries: int) -> list[zipfile.ZipInfo]:
    """The entries of a zip, once its end record shows a central directory of a sane size."""
    stated = _central_directory_size(path)
    if stated is not None:
        entries, size = stated
        if entries > max_entries or size > max_entries * MAX_CENTRAL_DIRECTORY_BYTES_PER_ENTRY:
            raise UnsafeArchiveError(
                f"the zip states {entries} entries in a {size} byte directory; at most "
                f"{max_entries} are read from one zip: split it"
            )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except _ENTRY_ERRORS as error:
        raise UnsafeArchiveError(f"unreadable zip file: {error}") from error
    if len(infos) > max_entries:  # the end record understated them
        raise UnsafeArchiveError(
            f"the zip holds {len(infos)} entries; at most {max_entries} are read from one zip"
        )
    return infos


def _central_directory_size(path: Path) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory as the end record states them; None if it is
    not found (zipfile then reports the damage)."""
    with path.open("rb") as handle:
        length = handle.seek(0, os.SEEK_END)
        handle.seek(
            max(0, length - _END_SIZE - _MAX_COMMENT - _ZIP64_LOCATOR_SIZE - _ZIP64_END_SIZE)
        )
        tail = handle.read()
    end = tail.rfind(_END_OF_CENTRAL_DIRECTORY)
    if end < 0 or len(tail) - end < _END_SIZE:
        return None
    entries, size = unpack("<HL", tail[end + 10 : end + 16])
    zip64 = end - _ZIP64_LOCATOR_SIZE - _ZIP64_END_SIZE
    if (
        zip64 >= 0
        and tail.startswith(_ZIP64_LOCATOR, end - _ZIP64_LOCATOR_SIZE)
        and tail.startswith(_ZIP64_END_OF_CENTRAL_DIRECTORY, zip64)
    ):
        entries, size = unpack("<QQ", tail[zip64 + 32 : zip64 + 48])
    return int(entries), int(size)


def _entry_refusal(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is refused from its central directory record alone; None to read it."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or ".." in name.split("/") or name[1:2] == ":":
        return "an absolute name or one climbing out with '..': a hostile zip"
    if info.flag_bits & 0x1:
        return "encrypted"
    if name.lower().endswith(".zip"):
        return "a zip inside a zip is not opened; extract it and import it on its own"
    if (
        info.file_size > ZIP_RATIO_FREE_BYTES
        and info.file_size > info.compress_size * MAX_ZIP_RATIO
    ):
        return (
            f"expands {info.file_size} bytes from {info.compress_size}, more than "
            f"{MAX_ZIP_RATIO} times: a zip bomb"
        )
    return None


def _read_bounded(entry: IO[bytes], stated: int, limit: int) -> bytes:
    """The entry's bytes, reading at most one byte past `limit` whatever the header says."""
    chunks: list[bytes] = []
    total = 0
    while chunk := entry.read(min(READ_CHUNK, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            raise UnsafeArchiveError(f"the entry holds more than the {limit} bytes read at most")
        chunks.append(chunk)
    if total != stated:
        raise UnsafeArchiveError(f"the entry holds {total} bytes, its header states {stated}")
    return b"".join(chunks)


def _printable(name: str) -> str:
    """An entry name fit for a terminal: control characters shown as '?'."""
    return "".join(character if character.isprintable() else "?" for character in name)


def _dicomdir_records(path: Path) -> list[Path]:
    """The files a DICOMDIR references (PS3.10 media), resolved against its folder."""
    try:
        file_set = FileSet(dcmread(path))
    except Exception as error:  # a damaged DICOMDIR is a clear refusal, not a crash
        raise InvalidInput(f"{path}: unreadable DICOMDIR ({error})") from error
    return [Path(instance.path) for instance in file_set]


def _refuse(error: PedipacsError) -> Callable[[], bytes]:
    def read() -> bytes:
        raise error

    return read


def _is_dicomdir(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4096)
    return MEDIA_STORAGE_DIRECTORY in head
