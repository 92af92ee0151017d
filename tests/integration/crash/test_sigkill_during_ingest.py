"""SIGKILL the whole server while storescu is sending: nothing acknowledged is ever lost.

The server (supervisor and both DIMSE workers) is SIGKILLed during a 500 instance storescu run,
after a seeded random number of acknowledgements, restarted, and sent the rest; three times,
once in each of these states:

- "response": just after a success response, while the next request comes in;
- "request": while the server is reading and ingesting a request;
- "blob-not-indexed": the index is write-locked from the test, so the server has written a blob
  and is waiting to index it: the crash window between steps 5 and 7 of the ingest order.

Afterwards every instance storescu saw acknowledged is retrieved with getscu and compared byte
for byte with the file sent; `pedipacs check` finds no index row without bytes; every blob file
has an index row (the start-up sweep removed the orphans); no temporary file is left; and the
aggregates count each stored instance once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from pedipacs.db.tables import Instance, Series, Study
from pedipacs.demo.generator import generate_small_instances
from pedipacs.dicom.part10 import dataset_offset
from pedipacs.storage.filesystem import TEMP_DIR_NAME
from support.server import RunningServer, free_port

SEED = 20261124
INSTANCES = 500
KILL_MODES = ("response", "request", "blob-not-indexed")
# Kill after this many acknowledgements in a round: a few tens to a few hundreds in all.
KILL_AFTER = (30, 150)
DEADLINE_SECONDS = 60.0
ORPHAN_EXIT_SECONDS = 15.0
POLL_SECONDS = 0.005  # polling interval while waiting, with a deadline, for a state

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
    """What one storescu run reported, line by line."""

    acknowledged: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    triggered: bool = False
    returncode: int | None = None
    output: list[str] = field(default_factory=list)


def send(
    server: RunningServer,
    files: list[Path],
    *,
    trigger_after: int | None = None,
    trigger_on_request: bool = False,
    on_trigger: Callable[[], None] = lambda: None,
) -> StoreRun:
    """Send `files` on one association, following storescu's report line by line.

    After `trigger_after` acknowledgements, `on_trigger` runs once: right then, or if
    `trigger_on_request`, as soon as storescu starts sending the next request.
    """
    by_name = {str(path): path for path in files}
    run = StoreRun()
    current: Path | None = None
    with subprocess.Popen(
        [
            "storescu",
            "-v",
            "-aet",
            "CRASHTEST",
            "-aec",
            server.ae_title,
            "-to",
            "30",
            "-ta",
            "30",
            "-td",
            "30",
            "127.0.0.1",
            str(server.dicom_port),
            *by_name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dcmtk_env(),
    ) as process:
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
            if (
                not run.triggered
                and trigger_after is not None
                and len(run.acknowledged) >= trigger_after
                and (line.startswith(SENDING_REQUEST) or not trigger_on_request)
            ):
                run.triggered = True
                on_trigger()
        run.returncode = process.wait(timeout=DEADLINE_SECONDS)
    return run


@contextmanager
def index_writes_blocked(database_url: str) -> Iterator[Callable[[], set[str]]]:
    """Hold the index's write lock; yields a function listing the blob keys indexed so far."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        connection = sqlite3.connect(url.database, timeout=DEADLINE_SECONDS)
        try:
            connection.isolation_level = None
            connection.execute("BEGIN IMMEDIATE")  # the one SQLite writer is now us
            yield lambda: {key for (key,) in connection.execute("SELECT blob_key FROM instance")}
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.connect() as pg, pg.begin() as transaction:
            # Readers pass; the server's INSERT INTO instance waits for us.
            pg.execute(text("LOCK TABLE instance IN EXCLUSIVE MODE"))
            yield lambda: set(pg.scalars(select(Instance.blob_key)))
            transaction.rollback()
    finally:
        engine.dispose()


def kill_with_blob_not_indexed(server: RunningServer, orphans: set[str]) -> None:
    """Block index writes, wait until the server has written a blob it cannot index, then
    SIGKILL it; `orphans` receives the keys of the blobs that were never indexed."""
    blob_root = server.data_dir / "blobs"
    with index_writes_blocked(server.database_url) as indexed_keys:
        indexed = indexed_keys()
        deadline = time.monotonic() + DEADLINE_SECONDS / 4  # well inside SQLite's busy timeout
        while not (blob_files(blob_root) - indexed):
            assert time.monotonic() < deadline, "the server wrote no blob while the index waited"
            time.sleep(POLL_SECONDS)
        server.kill()
        orphans.update(blob_files(blob_root) - indexed_keys())


def wait_until_process_group_is_gone(pgid: int, *, within: float = DEADLINE_SECONDS) -> None:
    """SIGKILL reaches every member at once, but only the supervisor is waited for: make sure
    no dying worker still holds the shared (SO_REUSEPORT) DICOM port before restarting."""
    deadline = time.monotonic() + within
    while _live_group_members(pgid):
        assert time.monotonic() < deadline, f"process group {pgid} outlived SIGKILL"
        time.sleep(POLL_SECONDS)


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
    return data[dataset_offset(data) :]


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


def assert_storage_matches_index(server: RunningServer) -> IndexState:
    """No index row without bytes, no bytes without an index row, no temporary file."""
    index = read_index(server.database_url)
    blob_root = server.data_dir / "blobs"
    assert blob_files(blob_root) == set(index.blob_keys.values())
    assert list((blob_root / TEMP_DIR_NAME).iterdir()) == []
    for uid, (aggregate, rows) in {**index.study_counts, **index.series_counts}.items():
        assert aggregate == rows, f"aggregate of {uid} is {aggregate}, {rows} rows exist"
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
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "every indexed instance has its bytes" in check.stdout
    return index


def retrieve_studies(server: RunningServer, study_uids: set[str], folder: Path) -> dict[str, bytes]:
    """C-GET each study into `folder`, bit-preserving, proposing the stored (explicit VR
    little endian) syntax first; returns SOP Instance UID -> dataset bytes received."""
    folder.mkdir(parents=True)
    for study_uid in sorted(study_uids):
        got = subprocess.run(
            [
                "getscu",
                "-S",
                "+xe",
                "+B",
                "-aet",
                "CRASHTEST",
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
            env=dcmtk_env(),
        )
        assert got.returncode == 0, got.stderr
    return {sop_instance_uid(path): dataset_bytes(path) for path in folder.iterdir()}


def test_acknowledged_instances_survive_repeated_sigkill_of_the_server_during_ingest(
    server: RunningServer, tmp_path: Path, dcmtk: None
) -> None:
    rng = random.Random(SEED)
    files = generate_small_instances(tmp_path / "sent", INSTANCES)
    pending = list(files)
    acknowledged: list[Path] = []
    orphans: set[str] = set()
    running = server
    try:
        for mode in rng.sample(KILL_MODES, len(KILL_MODES)):
            kill = (
                partial(kill_with_blob_not_indexed, running, orphans)
                if mode == "blob-not-indexed"
                else running.kill
            )
            run = send(
                running,
                pending,
                trigger_after=rng.randint(*KILL_AFTER),
                trigger_on_request=mode == "request",
                on_trigger=kill,
            )
            assert run.triggered, f"{mode}: storescu ended before the kill"
            assert run.refused == [], run.refused
            assert run.returncode != 0  # the association died with the server
            acknowledged += run.acknowledged
            done = set(run.acknowledged)
            pending = [path for path in pending if path not in done]
            wait_until_process_group_is_gone(running.process.pid)
            running = running.restart()  # the start-up sweep runs here

        # After the final restart, before anything else is sent.
        assert orphans, "the blob-not-indexed kill left no unindexed blob to sweep"
        index = assert_storage_matches_index(running)
        assert not orphans & set(index.blob_keys.values())
        acknowledged_uids = {sop_instance_uid(path) for path in acknowledged}
        assert len(acknowledged_uids) == len(acknowledged)
        assert acknowledged_uids <= set(index.blob_keys)

        # The rest goes in; instances indexed but never acknowledged come back as re-sends.
        rest = send(running, pending)
        assert (rest.returncode, rest.refused) == (0, []), "\n".join(rest.output[-20:])
        assert sorted(rest.acknowledged) == sorted(pending)
        index = assert_storage_matches_index(running)
        assert len(index.blob_keys) == INSTANCES

        retrieved = retrieve_studies(
            running, {study_instance_uid(path) for path in files}, tmp_path / "retrieved"
        )
        for path in acknowledged:
            uid = sop_instance_uid(path)
            assert uid in retrieved, f"acknowledged {path.name} ({uid}) was lost"
            assert retrieved[uid] == dataset_bytes(path), f"{path.name} changed in storage"
        assert set(retrieved) == {sop_instance_uid(path) for path in files}
    finally:
        if running is not server:
            running.stop()


def test_dimse_workers_exit_when_only_the_supervisor_is_sigkilled_while_they_start(
    tmp_path: Path, dcmtk: None
) -> None:
    """An OOM kill hits one process, not the group: workers orphaned while still starting must
    not go on serving the port without a supervisor (and against the next one's start-up)."""
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PEDIPACS_DATA_DIR": str(data_dir),
        "PEDIPACS_DICOM_PORT": str(port),
        "PEDIPACS_HL7_PORT": "0",  # not under test here; the default port may be taken
        "PEDIPACS_HTTP_PORT": str(free_port()),
        "PEDIPACS_DICOM_WORKERS": "2",
    }
    with (
        (data_dir / "server.log").open("wb") as log,
        subprocess.Popen(
            [sys.executable, "-m", "pedipacs", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as supervisor,
    ):
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while not _starting_workers(supervisor.pid):
                assert supervisor.poll() is None, (data_dir / "server.log").read_text()
                assert time.monotonic() < deadline, "no DIMSE worker was ever started"
                time.sleep(POLL_SECONDS)
            supervisor.kill()  # the supervisor alone, not its process group
            supervisor.wait(timeout=DEADLINE_SECONDS)

            # Promptly: a worker's own start-up takes a second or two.
            wait_until_process_group_is_gone(supervisor.pid, within=ORPHAN_EXIT_SECONDS)
        finally:
            for pid in _live_group_members(supervisor.pid):
                os.kill(pid, signal.SIGKILL)
    echo = subprocess.run(
        ["echoscu", "-to", "2", "-aec", "PEDIPACS", "127.0.0.1", str(port)],
        capture_output=True,
        check=False,
    )
    assert echo.returncode != 0, "something still answers on the DICOM port"


def _starting_workers(pgid: int) -> list[int]:
    """Worker processes of the group that received their start-up data from the supervisor
    (they are importing pedipacs: pydantic is loaded) and so will run, unless told to die."""
    workers = []
    for pid in _live_group_members(pgid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        if b"multiprocessing.spawn" in command and "_pydantic_core" in maps:
            workers.append(pid)
    return workers
