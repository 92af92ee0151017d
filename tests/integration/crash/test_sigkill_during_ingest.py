"""SIGKILL the whole server while storescu is sending: nothing acknowledged is ever lost.

The server (supervisor and both DIMSE workers) is killed at a seeded random point of a 500
instance storescu run, restarted, and sent the rest, several times over. Afterwards every
instance storescu saw acknowledged is retrieved over C-MOVE and compared byte for byte with the
file sent; `pedipacs check` finds no index row without bytes; every blob file has an index row
(the start-up sweep removed the orphans of the kills); and no temporary file is left.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, func, select

from pedipacs.db.tables import Instance, Series, Study
from pedipacs.demo.generator import generate_small_instances
from pedipacs.storage.filesystem import TEMP_DIR_NAME
from support.server import RunningServer, free_port

SEED = 20261124
INSTANCES = 500
ROUNDS = 3
# Kill after this many acknowledgements in a round: a few tens to a few hundreds in all.
KILL_AFTER = (30, 150)
MOVE_DESTINATION_AE = "CRASHDEST"
DEADLINE_SECONDS = 60.0

# storescu -v prints one line per file sent and one per response, in order.
SENDING_FILE = "I: Sending file: "
SENDING_REQUEST = "I: Sending Store Request"
STORE_RESPONSE = "I: Received Store Response ("
SUCCESS_RESPONSE = "I: Received Store Response (Success)"


def dcmtk_env() -> dict[str, str]:
    """DCMTK leaves Nagle's algorithm on unless told; each C-STORE would then wait ~40 ms."""
    return {**os.environ, "TCP_NODELAY": "1"}


@dataclass
class StoreRun:
    """What one storescu run reported, line by line, and whether we killed the server."""

    acknowledged: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    killed_server: bool = False
    returncode: int | None = None
    output: list[str] = field(default_factory=list)


def send_and_kill(
    server: RunningServer, files: list[Path], *, kill_after: int, trigger: str
) -> StoreRun:
    """Send `files` on one association; SIGKILL the server after `kill_after` acknowledgements.

    trigger "response": right after the kill_after-th success response (the server has just
    received the next request); trigger "request": right after storescu starts sending the
    request that follows it (the server is reading or ingesting it).
    """
    by_name = {str(path): path for path in files}
    run = StoreRun()
    current: Path | None = None
    with subprocess.Popen(
        ["storescu", "-v", "-aet", "CRASHTEST", "-aec", server.ae_title,
         "-to", "30", "-ta", "30", "-td", "30",
         "127.0.0.1", str(server.dicom_port), *by_name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env(),
    ) as process:  # fmt: skip
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            run.output.append(line)
            if line.startswith(SENDING_FILE):
                current = by_name[line.removeprefix(SENDING_FILE)]
            elif line.startswith(STORE_RESPONSE):
                assert current is not None, line
                if line == SUCCESS_RESPONSE:
                    run.acknowledged.append(current)
                else:
                    run.refused.append((current, line))
                current = None
            if run.killed_server:
                continue
            acknowledged = len(run.acknowledged)
            if (trigger == "response" and acknowledged >= kill_after) or (
                trigger == "request"
                and acknowledged >= kill_after
                and line.startswith(SENDING_REQUEST)
            ):
                server.kill()
                run.killed_server = True
        run.returncode = process.wait(timeout=DEADLINE_SECONDS)
    return run


def store_all(server: RunningServer, files: list[Path]) -> StoreRun:
    """Send `files` and expect every one acknowledged."""
    run = send_and_kill(server, files, kill_after=len(files) + 1, trigger="response")
    assert run.returncode == 0, "\n".join(run.output[-20:])
    assert run.refused == []
    assert sorted(run.acknowledged) == sorted(files)
    return run


def wait_until_process_group_is_gone(pgid: int) -> None:
    """SIGKILL reaches every member at once, but only the supervisor is waited for: make sure
    no dying worker still holds the shared (SO_REUSEPORT) DICOM port before restarting."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while _live_group_members(pgid):
        assert time.monotonic() < deadline, f"process group {pgid} outlived SIGKILL"
        time.sleep(0.02)  # polling interval, with a deadline


def _live_group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the File Meta Information: what must survive unchanged."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", path
    group, element, vr, _length, meta_length = struct.unpack("<HH2sHI", data[132:144])
    assert (group, element, vr) == (2, 0, b"UL"), path
    return data[144 + meta_length :]


def sop_instance_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def study_instance_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


@dataclass
class IndexState:
    blob_keys: dict[str, str]  # SOP Instance UID -> blob key
    study_counts: dict[str, tuple[int, int]]  # study UID -> (aggregate, counted rows)
    series_counts: dict[str, tuple[int, int]]  # series UID -> (aggregate, counted rows)


def read_index(database_url: str) -> IndexState:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            keys = connection.execute(select(Instance.sop_instance_uid, Instance.blob_key))
            studies = connection.execute(
                select(
                    Study.study_instance_uid,
                    Study.number_of_study_related_instances,
                    func.count(Instance.id),
                )
                .join(Series, Series.study_fk == Study.id)
                .join(Instance, Instance.series_fk == Series.id)
                .group_by(Study.id)
            )
            series = connection.execute(
                select(
                    Series.series_instance_uid,
                    Series.number_of_series_related_instances,
                    func.count(Instance.id),
                )
                .join(Instance, Instance.series_fk == Series.id)
                .group_by(Series.id)
            )
            return IndexState(
                blob_keys={uid: key for uid, key in keys},
                study_counts={uid: (aggregate, rows) for uid, aggregate, rows in studies},
                series_counts={uid: (aggregate, rows) for uid, aggregate, rows in series},
            )
    finally:
        engine.dispose()


def blob_files(blob_root: Path) -> set[str]:
    """Keys of every file in the blob folder outside its temporary folder."""
    return {
        path.relative_to(blob_root).as_posix()
        for path in blob_root.rglob("*")
        if path.is_file() and TEMP_DIR_NAME not in path.relative_to(blob_root).parts
    }


def pedipacs_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pedipacs", *args,
         "--data-dir", str(server.data_dir), "--database-url", server.database_url],
        capture_output=True, text=True, timeout=DEADLINE_SECONDS, check=False,
    )  # fmt: skip


@dataclass
class MoveDestination:
    ae_title: str
    port: int
    folder: Path


@contextmanager
def move_destination(server: RunningServer, folder: Path) -> Iterator[MoveDestination]:
    """A DCMTK storescp writing received files unchanged (+B), registered as a peer."""
    folder.mkdir(parents=True)
    port = free_port()
    added = pedipacs_cli(
        server, "peer", "add", "crash-destination", "--aet", MOVE_DESTINATION_AE,
        "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    with subprocess.Popen(
        ["storescp", "+B", "-aet", MOVE_DESTINATION_AE, "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dcmtk_env(),
    ) as storescp:  # fmt: skip
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while subprocess.run(
                ["echoscu", "-to", "2", "-aec", MOVE_DESTINATION_AE, "127.0.0.1", str(port)],
                capture_output=True, check=False,
            ).returncode != 0:  # fmt: skip
                assert storescp.poll() is None, "storescp exited"
                assert time.monotonic() < deadline, "storescp never answered C-ECHO"
                time.sleep(0.05)  # polling interval of a readiness probe
            yield MoveDestination(MOVE_DESTINATION_AE, port, folder)
        finally:
            storescp.terminate()


def retrieve_studies(
    server: RunningServer, destination: MoveDestination, study_uids: set[str]
) -> dict[str, bytes]:
    """C-MOVE each study to the destination; returns SOP Instance UID -> dataset bytes."""
    for study_uid in sorted(study_uids):
        moved = subprocess.run(
            ["movescu", "-S", "-aet", "CRASHTEST", "-aec", server.ae_title,
             "-aem", destination.ae_title, "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", str(server.dicom_port)],
            capture_output=True, text=True, timeout=DEADLINE_SECONDS, check=False,
            env=dcmtk_env(),
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
    return {sop_instance_uid(path): dataset_bytes(path) for path in destination.folder.iterdir()}


def test_acknowledged_instances_survive_repeated_sigkill_of_the_server_during_ingest(
    server: RunningServer, tmp_path: Path, dcmtk: None
) -> None:
    rng = random.Random(SEED)
    files = generate_small_instances(tmp_path / "sent", INSTANCES)
    pending = list(files)
    acknowledged: list[Path] = []
    running = server
    try:
        for round_number in range(ROUNDS):
            kill_after = rng.randint(*KILL_AFTER)
            trigger = rng.choice(("response", "request"))
            run = send_and_kill(running, pending, kill_after=kill_after, trigger=trigger)
            assert run.killed_server, f"round {round_number}: storescu ended before the kill"
            assert run.refused == [], run.refused
            assert run.returncode != 0  # the association died with the server
            acknowledged += run.acknowledged
            done = set(run.acknowledged)
            pending = [path for path in pending if path not in done]
            wait_until_process_group_is_gone(running.process.pid)
            running = running.restart()  # the start-up sweep runs here

        # After the final restart, before anything else is sent.
        index = read_index(running.database_url)
        blob_root = running.data_dir / "blobs"
        assert blob_files(blob_root) == set(index.blob_keys.values())
        assert list((blob_root / TEMP_DIR_NAME).iterdir()) == []
        check = pedipacs_cli(running, "check", "--no-sweep")
        assert check.returncode == 0, check.stdout + check.stderr
        acknowledged_uids = {sop_instance_uid(path) for path in acknowledged}
        assert acknowledged_uids <= set(index.blob_keys)
        assert len(acknowledged) == len(acknowledged_uids)

        # The rest goes in; instances indexed but never acknowledged come back as re-sends.
        store_all(running, pending)

        index = read_index(running.database_url)
        assert len(index.blob_keys) == INSTANCES
        assert blob_files(blob_root) == set(index.blob_keys.values())
        assert list((blob_root / TEMP_DIR_NAME).iterdir()) == []
        for uid, (aggregate, rows) in {**index.study_counts, **index.series_counts}.items():
            assert aggregate == rows, f"aggregate of {uid} is {aggregate}, {rows} rows exist"
        check = pedipacs_cli(running, "check", "--no-sweep")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "every indexed instance has its bytes" in check.stdout

        with move_destination(running, tmp_path / "retrieved") as destination:
            retrieved = retrieve_studies(
                running, destination, {study_instance_uid(path) for path in files}
            )
        for path in acknowledged:
            uid = sop_instance_uid(path)
            assert uid in retrieved, f"acknowledged {path.name} ({uid}) was lost"
            assert retrieved[uid] == dataset_bytes(path), f"{path.name} changed in storage"
        assert set(retrieved) == {sop_instance_uid(path) for path in files}
    finally:
        if running is not server:
            running.stop()
