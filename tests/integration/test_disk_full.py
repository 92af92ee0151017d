"""A full disk: stores are refused with 0xA700, nothing is half-written, and storing resumes
by itself, without a restart, once space is freed.

The blob folder (and in one case the SQLite index too) lives on a small tmpfs mounted for the
test, mostly taken by a filler file the test creates; instances are stored until the disk is
full, then the filler is deleted and the refused instances are sent again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, select

from pedipacs.db.tables import Instance
from pedipacs.demo.generator import generate_small_instances
from pedipacs.dicom.part10 import dataset_offset
from pedipacs.storage.filesystem import TEMP_DIR_NAME
from support.server import RunningServer, start_server

SMALL_DISK_SIZE = "8m"
# Left free beside the filler: room for a few tens of small (64x64) instances, or for about
# ten when the SQLite index (its write-ahead log grows by every commit) shares the disk.
BLOB_ROOM_LEFT = 384 * 1024
BLOB_AND_INDEX_ROOM_LEFT = 1024 * 1024
INSTANCES = 80
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DEADLINE_SECONDS = 60.0

# storescu -d: "I: Sending file: <path>" before each request, then the response's dump
# with "D: DIMSE Status                  : 0xa700: Refused: OutOfResources".
SENDING_FILE = "I: Sending file: "
DIMSE_STATUS = "D: DIMSE Status"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={SMALL_DISK_SIZE},mode=0700",
            "tmpfs",
            str(mount_point),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a {SMALL_DISK_SIZE} tmpfs to fill up (needs root or CAP_SYS_ADMIN): "
            f"{mounted.stderr.strip()}"
        )
    try:
        yield mount_point
    finally:
        unmounted = subprocess.run(
            ["umount", str(mount_point)], capture_output=True, text=True, check=False
        )
        if unmounted.returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def sent_files(tmp_path: Path) -> list[Path]:
    return generate_small_instances(tmp_path / "sent", INSTANCES)


def fill_leaving(disk: Path, room: int) -> Path:
    """A filler file taking all of `disk` but `room` bytes."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    assert free > room
    filler = disk / "filler.bin"
    with filler.open("wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, free - room)
    return filler


def store_statuses(server: RunningServer, files: list[Path]) -> dict[Path, int]:
    """Send `files` on one association, going on after failures; the status of each."""
    by_name = {str(path): path for path in files}
    result = subprocess.run(
        [
            "storescu",
            "-d",
            "-nh",
            "-aet",
            "FILLER",
            "-aec",
            server.ae_title,
            "127.0.0.1",
            str(server.dicom_port),
            *by_name,
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
        env={**os.environ, "TCP_NODELAY": "1"},  # else DCMTK waits ~40 ms per C-STORE
    )
    statuses: dict[Path, int] = {}
    current: Path | None = None
    for line in result.stderr.splitlines():
        if line.startswith(SENDING_FILE):
            current = by_name[line.removeprefix(SENDING_FILE)]
        elif line.startswith(DIMSE_STATUS):
            assert current is not None and current not in statuses, line
            statuses[current] = int(line.split(":", 2)[2].strip()[:6], 16)
    assert sorted(statuses) == sorted(files), result.stderr[-3000:]
    return statuses


def server_processes(server: RunningServer) -> set[int]:
    """The supervisor and its DIMSE workers (the server runs in its own process group)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == server.process.pid and state not in ("Z", "X"):
            members.add(int(entry.name))
    assert server.process.pid in members
    return members


def sop_instance_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def dataset_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[dataset_offset(data) :]


def indexed_blob_keys(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Instance.sop_instance_uid, Instance.blob_key))
            return {uid: key for uid, key in rows}
    finally:
        engine.dispose()


def assert_stored_exactly(
    server: RunningServer, blob_root: Path, files: list[Path], *, retrieve: bool = True
) -> None:
    """The index holds exactly `files`, every row has its bytes, no other bytes exist, no
    temporary file is left, and (if `retrieve`) getscu returns each file's dataset unchanged."""
    indexed = indexed_blob_keys(server.database_url)
    assert set(indexed) == {sop_instance_uid(path) for path in files}
    on_disk = {
        path.relative_to(blob_root).as_posix()
        for path in blob_root.rglob("*")
        if path.is_file() and TEMP_DIR_NAME not in path.relative_to(blob_root).parts
    }
    assert on_disk == set(indexed.values())
    assert list((blob_root / TEMP_DIR_NAME).iterdir()) == []
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "pedipacs",
            "check",
            "--no-sweep",
            "--data-dir",
            str(server.data_dir),
            "--database-url",
            server.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
        env={**os.environ, "PEDIPACS_STORAGE_DIR": str(blob_root)},
    )
    assert check.returncode == 0, check.stdout + check.stderr
    if not retrieve:
        return

    folder = server.data_dir.parent / f"retrieved-{len(files)}"
    folder.mkdir()
    studies = {str(dcmread(path, stop_before_pixels=True).StudyInstanceUID) for path in files}
    for study_uid in sorted(studies):
        got = subprocess.run(
            [
                "getscu",
                "-S",
                "+xe",
                "+B",
                "-aec",
                server.ae_title,
                "-od",
                str(folder),
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "127.0.0.1",
                str(server.dicom_port),
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE_SECONDS,
            check=False,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        assert got.returncode == 0, got.stderr
    retrieved = {sop_instance_uid(path): dataset_bytes(path) for path in folder.iterdir()}
    assert retrieved == {sop_instance_uid(path): dataset_bytes(path) for path in files}


def fill_refuse_free_resume(
    server: RunningServer,
    disk: Path,
    blob_root: Path,
    files: list[Path],
    *,
    room_left: int,
    index_on_disk: bool,
) -> None:
    processes = server_processes(server)
    filler = fill_leaving(disk, room_left)

    statuses = store_statuses(server, files)

    acknowledged = [path for path in files if statuses[path] == SUCCESS]
    refused = [path for path in files if statuses[path] != SUCCESS]
    assert acknowledged, "nothing fitted on the disk"
    assert refused, "the disk never filled up"
    assert {statuses[path] for path in refused} == {OUT_OF_RESOURCES}
    assert server.process.poll() is None
    # A retrieve must write its audit record first, so with the index's disk full it is
    # refused; the acknowledged instances are then retrieved after space is freed.
    assert_stored_exactly(server, blob_root, acknowledged, retrieve=not index_on_disk)

    filler.unlink()  # space comes back; the same server process must take stores again
    statuses = store_statuses(server, refused)

    assert set(statuses.values()) == {SUCCESS}
    assert server_processes(server) == processes  # no process was restarted on the way
    assert_stored_exactly(server, blob_root, files)


def test_full_blob_disk_refuses_stores_with_a700_and_resumes_once_space_is_freed(
    small_disk: Path, database_url: str, sent_files: list[Path], tmp_path: Path, dcmtk: None
) -> None:
    blob_root = small_disk / "blobs"
    server = start_server(
        tmp_path / "server", database_url, extra_env={"PEDIPACS_STORAGE_DIR": str(blob_root)}
    )
    try:
        fill_refuse_free_resume(
            server,
            small_disk,
            blob_root,
            sent_files,
            room_left=BLOB_ROOM_LEFT,
            index_on_disk=False,
        )
    finally:
        server.stop()


def test_full_disk_under_sqlite_index_refuses_stores_with_a700_and_resumes_once_freed(
    small_disk: Path, sent_files: list[Path], tmp_path: Path, dcmtk: None
) -> None:
    blob_root = small_disk / "blobs"
    server = start_server(
        tmp_path / "server",
        f"sqlite:///{small_disk / 'index.sqlite3'}",
        extra_env={"PEDIPACS_STORAGE_DIR": str(blob_root)},
    )
    try:
        fill_refuse_free_resume(
            server,
            small_disk,
            blob_root,
            sent_files,
            room_left=BLOB_AND_INDEX_ROOM_LEFT,
            index_on_disk=True,
        )
    finally:
        server.stop()
