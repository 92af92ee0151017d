"""ImportService: folders, zip files and DICOMDIRs go through the one ingest path."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.fileset import FileSet

from pedipacs.archive.ingest import IngestService
from pedipacs.dicom.part10 import part10_from_bytes
from pedipacs.errors import InvalidInput, ObjectTooLargeError, PedipacsError
from pedipacs.model.origin import Origin
from pedipacs.model.records import StoreOutcome

DICOMDIR_NAME = "DICOMDIR"
MEDIA_STORAGE_DIRECTORY = b"1.2.840.10008.1.3.10"
# A zip entry may expand at most this many times its compressed size (zip bombs).
MAX_ZIP_RATIO = 200


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
    def __init__(self, ingest: IngestService, *, max_object_size: int) -> None:
        self._ingest = ingest
        self._max_object_size = max_object_size

    def collect(self, paths: list[Path]) -> list[ImportItem]:
        """Every candidate object under `paths` (folders walked, zips opened, DICOMDIR skipped)."""
        items: list[ImportItem] = []
        for path in paths:
            items.extend(self._items(path))
        return items

    def _dicomdir_items(self, path: Path) -> Iterator[ImportItem]:
        for referenced in _dicomdir_records(path):
            if referenced.is_file():
                yield ImportItem(str(referenced), referenced.stat().st_size, referenced.read_bytes)
            else:
                yield ImportItem(str(referenced), 0, _refuse(f"{referenced}: listed, missing"))

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
                    raise ObjectTooLargeError(f"{item.size} bytes exceeds the maximum")
                return item, self._ingest.ingest(part10_from_bytes(item.read()), origin).outcome
            except PedipacsError as error:
                return item, f"{type(error).__name__}: {error}"
            except OSError as error:
                return item, f"cannot read: {error.strerror or error}"

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
        return summary

    def _items(self, path: Path, *, in_folder: bool = False) -> Iterator[ImportItem]:
        if path.is_dir():
            for directory, _dirs, files in os.walk(path):
                for name in sorted(files):
                    yield from self._items(Path(directory) / name, in_folder=True)
        elif zipfile.is_zipfile(path):
            yield from _zip_items(path)
        elif path.is_file():
            if path.name.upper() == DICOMDIR_NAME and _is_dicomdir(path):
                if not in_folder:
                    yield from self._dicomdir_items(path)
                return  # inside a folder walk, the referenced files are found by the walk
            yield ImportItem(str(path), path.stat().st_size, path.read_bytes)
        else:
            raise InvalidInput(f"{path} is not a file or folder")


def _dicomdir_records(path: Path) -> list[Path]:
    """The files a DICOMDIR references (PS3.10 media), resolved against its folder."""
    try:
        file_set = FileSet(dcmread(path))
    except Exception as error:  # a damaged DICOMDIR is a clear refusal, not a crash
        raise InvalidInput(f"{path}: unreadable DICOMDIR ({error})") from error
    return [Path(instance.path) for instance in file_set]


def _zip_items(path: Path) -> Iterator[ImportItem]:
    with zipfile.ZipFile(path) as archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
    for info in entries:
        if Path(info.filename).name.upper() == DICOMDIR_NAME:
            continue
        source = f"{path}!{info.filename}"
        if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO:
            yield ImportItem(source, info.file_size, _refuse(f"{source}: suspicious ratio"))
            continue
        yield ImportItem(source, info.file_size, _zip_reader(path, info.filename))


def _zip_reader(path: Path, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)

    return read


def _refuse(reason: str) -> Callable[[], bytes]:
    def read() -> bytes:
        raise InvalidInput(reason)

    return read


def _is_dicomdir(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4096)
    return MEDIA_STORAGE_DIRECTORY in head
