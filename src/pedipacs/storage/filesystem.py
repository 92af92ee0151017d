"""A blob store on a local (or mounted) filesystem.

Writes go to a temporary file inside the root, are fsynced, renamed into place, and the
directory is fsynced, so a blob either exists whole and durable or not at all.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pedipacs.errors import InvalidInput, NotFound, StorageUnavailable
from pedipacs.storage.blob_store import BlobInfo, StoredBlob

TEMP_DIR_NAME = ".incoming"


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._temp_dir = self.root / TEMP_DIR_NAME
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()

    def path_for(self, key: str) -> Path:
        """The file of `key`; refuses keys that would escape the root."""
        if not key or key.startswith(("/", ".")) or "\\" in key:
            raise InvalidInput(f"invalid blob key {key!r}")
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise InvalidInput(f"invalid blob key {key!r}")
        return path

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        final_path = self.path_for(key)
        temp_path = self._temp_dir / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with temp_path.open("xb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            self._ensure_dir(final_path.parent)
            temp_path.rename(final_path)
            _fsync_dir(final_path.parent)
        except OSError as error:
            temp_path.unlink(missing_ok=True)
            raise _storage_error(error, key) from error
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return BlobInfo(key=key, size=size, sha256=digest.hexdigest())

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path_for(key).open("rb")
        except FileNotFoundError as error:
            raise NotFound(f"blob {key!r} is missing") from error

    def local_path(self, key: str) -> Path | None:
        return self.path_for(key)

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def iter_blobs(self) -> Iterator[StoredBlob]:
        for directory, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [name for name in dirnames if name != TEMP_DIR_NAME]
            for name in filenames:
                path = Path(directory) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                yield StoredBlob(
                    key=path.relative_to(self.root).as_posix(),
                    size=stat.st_size,
                    modified_at=datetime.fromtimestamp(stat.st_mtime, UTC),
                )

    def sweep_temporary(self, older_than: datetime) -> int:
        """Remove half-written temporary files and write probes left by a crash; returns how
        many. Everything in the temporary folder is ours: `.part` files from `put` and
        `probe-*` files from `check`."""
        removed = 0
        for path in self._temp_dir.iterdir():
            if not path.is_file():
                continue
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def check(self) -> None:
        probe = self._temp_dir / f"probe-{uuid.uuid4().hex}"
        try:
            with probe.open("xb") as handle:
                handle.write(b"ok")
            probe.unlink()
        except OSError as error:
            probe.unlink(missing_ok=True)
            raise _storage_error(error, "probe") from error

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        directory.mkdir(parents=True, exist_ok=True)
        # A new directory entry is only durable once its parent is fsynced.
        for created in reversed(missing):
            _fsync_dir(created.parent)
        self._known_dirs.add(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(error: OSError, key: str) -> StorageUnavailable:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageUnavailable(f"storage full while writing {key!r}")
    return StorageUnavailable(f"storage error while writing {key!r}: {error.strerror}")
