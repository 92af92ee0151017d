"""FilesystemBlobStore: keys stay inside the root, writes are atomic, deletes are idempotent."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pedipacs.errors import InvalidInput, NotFound
from pedipacs.storage.filesystem import TEMP_DIR_NAME, FilesystemBlobStore

KEY = "ab/cd/abcdef0123456789.dcm"


class ChunkSourceFailed(Exception):
    """What the chunk iterator raises midway, standing in for a dropped association."""


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


def _files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def _failing_chunks(good: int) -> Iterator[bytes]:
    for _ in range(good):
        yield b"x" * 65536
    raise ChunkSourceFailed("the sender went away")


@pytest.mark.parametrize(
    "key",
    [
        "../outside.dcm",
        "../../etc/passwd",
        "ab/../../outside.dcm",
        "ab/cd/../../../outside.dcm",
        "/etc/passwd",
        "/tmp/outside.dcm",
        "",
        ".",
        "..",
        f"{TEMP_DIR_NAME}/x.part",
        "ab\\..\\..\\outside.dcm",
    ],
)
def test_keys_escaping_the_root_or_naming_its_temp_folder_are_refused(
    store: FilesystemBlobStore, key: str
) -> None:
    with pytest.raises(InvalidInput):
        store.put(key, [b"data"])
    with pytest.raises(InvalidInput):
        store.delete(key)
    with pytest.raises(InvalidInput):
        store.open(key)
    with pytest.raises(InvalidInput):
        store.exists(key)
    assert not (store.root.parent / "outside.dcm").exists()
    assert _files_under(store.root) == []


def test_key_through_a_symlink_leading_out_of_the_root_is_refused(
    store: FilesystemBlobStore, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (store.root / "ab").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidInput):
        store.put("ab/escaped.dcm", [b"data"])
    assert list(outside.iterdir()) == []


def test_put_writes_the_bytes_under_the_key_and_reports_size_and_sha256(
    store: FilesystemBlobStore,
) -> None:
    chunks = [b"DICM", b"\x00" * 1000, b"tail"]
    data = b"".join(chunks)

    info = store.put(KEY, chunks)

    assert (info.key, info.size, info.sha256) == (KEY, len(data), hashlib.sha256(data).hexdigest())
    assert store.exists(KEY)
    with store.open(KEY) as handle:
        assert handle.read() == data
    assert store.local_path(KEY) == store.root / KEY
    assert list((store.root / TEMP_DIR_NAME).iterdir()) == []


def test_put_leaves_no_file_at_all_when_the_chunk_iterator_raises_midway(
    store: FilesystemBlobStore,
) -> None:
    with pytest.raises(ChunkSourceFailed):
        store.put(KEY, _failing_chunks(good=3))

    assert not store.exists(KEY)
    assert _files_under(store.root) == []  # neither the final file nor a temporary one
    with pytest.raises(NotFound):
        store.open(KEY)


def test_put_failing_midway_keeps_the_previous_blob_under_the_key_intact(
    store: FilesystemBlobStore,
) -> None:
    store.put(KEY, [b"first version"])

    with pytest.raises(ChunkSourceFailed):
        store.put(KEY, _failing_chunks(good=2))

    with store.open(KEY) as handle:
        assert handle.read() == b"first version"
    assert list((store.root / TEMP_DIR_NAME).iterdir()) == []


def test_put_never_shows_a_partial_file_under_the_final_key_while_writing(
    store: FilesystemBlobStore,
) -> None:
    seen_during_write: list[bool] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            seen_during_write.append(store.exists(KEY))
            yield b"y" * 4096

    store.put(KEY, chunks())

    assert seen_during_write == [False] * 4
    assert (store.root / KEY).stat().st_size == 4 * 4096


def test_delete_is_idempotent_and_ignores_keys_never_written(
    store: FilesystemBlobStore,
) -> None:
    store.put(KEY, [b"data"])

    store.delete(KEY)
    store.delete(KEY)
    store.delete("ef/01/never-written.dcm")

    assert not store.exists(KEY)
    assert _files_under(store.root) == []


def test_iter_blobs_lists_stored_blobs_but_not_temporary_files(
    store: FilesystemBlobStore,
) -> None:
    store.put(KEY, [b"data"])
    store.put("ef/01/other.dcm", [b"other"])
    (store.root / TEMP_DIR_NAME / "left-by-a-crash.part").write_bytes(b"half")

    blobs = {blob.key: blob.size for blob in store.iter_blobs()}

    assert blobs == {KEY: 4, "ef/01/other.dcm": 5}


def test_sweep_temporary_removes_only_temporary_files_older_than_the_cutoff(
    store: FilesystemBlobStore,
) -> None:
    temp_dir = store.root / TEMP_DIR_NAME
    old = temp_dir / "old.part"
    new = temp_dir / "new.part"
    old.write_bytes(b"half")
    new.write_bytes(b"half")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(old, (an_hour_ago, an_hour_ago))

    removed = store.sweep_temporary(datetime.now(UTC) - timedelta(minutes=5))

    assert removed == 1
    assert sorted(path.name for path in temp_dir.iterdir()) == ["new.part"]


def test_sweep_temporary_also_removes_a_write_probe_left_by_a_crash_during_check(
    store: FilesystemBlobStore,
) -> None:
    probe = store.root / TEMP_DIR_NAME / "probe-0123456789abcdef"
    probe.write_bytes(b"ok")  # what `check` leaves when killed between writing and unlinking
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(probe, (an_hour_ago, an_hour_ago))

    removed = store.sweep_temporary(datetime.now(UTC) - timedelta(minutes=5))

    assert removed == 1
    assert not probe.exists()


def test_check_leaves_nothing_in_the_temporary_folder(store: FilesystemBlobStore) -> None:
    store.check()

    assert list((store.root / TEMP_DIR_NAME).iterdir()) == []
