"""The blob store interface: opaque keys, atomic two-phase writes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class StoredBlob:
    key: str
    size: int
    modified_at: datetime


class BlobStore(Protocol):
    """Where image bytes live. Keys are made by the archive and opaque to the store."""

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Write atomically and durably: when this returns, the bytes survive a power loss."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the blob for reading; raises NotFound if absent."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob, for zero-copy sending; None for remote stores."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; absent blobs are ignored."""
        ...

    def exists(self, key: str) -> bool: ...

    def iter_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob, for integrity checks and orphan sweeps."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable if the store cannot be written now."""
        ...
