"""The client side, the same for every server: DCMTK storescu and getscu, and a pynetdicom
C-FIND SCU that keeps one association open so that the query alone is timed."""

from __future__ import annotations

import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from peers import LOOPBACK, SCU_AE_TITLE, Server, tool_environment

TOOL_TIMEOUT = 3600.0  # seconds; a hung tool must not hang the benchmark
PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000
# Return keys of a worklist-style study query.
STUDY_RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
)


def store(server: Server, associations: Sequence[Sequence[Path]], log_dir: Path) -> float:
    """Run one storescu per association, all at once; return the wall time until all end."""
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = [
        [
            "storescu",
            "-aet",
            SCU_AE_TITLE,
            "-aec",
            server.ae_title,
            "+sd",  # arguments are folders to scan
            LOOPBACK,
            str(server.dicom_port),
            *map(str, folders),
        ]
        for folders in associations
    ]
    started = time.perf_counter()
    codes = _run_together(commands, log_dir, "storescu")
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"storescu exited with {codes}; see {log_dir}")
    return elapsed


def _run_together(commands: list[list[str]], log_dir: Path, stem: str) -> list[int]:
    processes = []
    try:
        for number, command in enumerate(commands):
            with (log_dir / f"{stem}-{number}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        command, env=tool_environment(), stdout=log, stderr=subprocess.STDOUT
                    )
                )
        return [process.wait(timeout=TOOL_TIMEOUT) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _getscu_command(server: Server, study_uid: str, series_uid: str) -> list[str]:
    return [
        "getscu",
        "--study",
        "-aet",
        SCU_AE_TITLE,
        "-aec",
        server.ae_title,
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "-k",
        f"SeriesInstanceUID={series_uid}",
        LOOPBACK,
        str(server.dicom_port),
    ]


def get_series(server: Server, study_uid: str, series_uid: str) -> float:
    """C-GET the series with getscu, which receives and discards it; return the wall time."""
    command = [*_getscu_command(server, study_uid, series_uid), "--ignore"]
    started = time.perf_counter()
    result = subprocess.run(
        command, env=tool_environment(), capture_output=True, timeout=TOOL_TIMEOUT, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"getscu exited with {result.returncode}: {result.stderr.decode()}")
    return elapsed


def count_retrieved(server: Server, study_uid: str, series_uid: str) -> int:
    """C-GET the series into a temporary folder and count the files: checks what is timed."""
    with tempfile.TemporaryDirectory(prefix="pedipacs-bench-get-") as folder:
        command = [*_getscu_command(server, study_uid, series_uid), "-od", folder]
        subprocess.run(
            command, env=tool_environment(), capture_output=True, timeout=TOOL_TIMEOUT, check=True
        )
        return sum(1 for _ in Path(folder).iterdir())


@dataclass(frozen=True)
class QueryTiming:
    median_ms: float
    client_cpu_ms: float  # the SCU's own CPU per query (pynetdicom decoding), median
    matches: int


def study_identifier(**keys: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_RETURN_KEYS:
        setattr(identifier, keyword, keys.get(keyword, ""))
    return identifier


class FindClient:
    """One open association to `server` for timing C-FINDs (Study Root, STUDY level)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._assoc: Any = None

    def __enter__(self) -> Self:
        ae = AE(ae_title=SCU_AE_TITLE)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate(
            LOOPBACK, self._server.dicom_port, ae_title=self._server.ae_title, max_pdu=0
        )
        if not assoc.is_established:
            raise RuntimeError(f"{self._server.name} refused the C-FIND association")
        # pynetdicom leaves Nagle's algorithm on: each round trip would wait ~40 ms.
        sock: Any = assoc.dul.socket
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._assoc = assoc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._assoc is not None:
            self._assoc.release()
            self._assoc = None

    def find(self, identifier: Dataset) -> int:
        """Run one C-FIND to completion; return the number of matches."""
        matches = 0
        responses = self._assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        for status, _identifier in responses:
            code = int(status.Status) if status else -1
            if code in PENDING:
                matches += 1
            elif code != SUCCESS:
                raise RuntimeError(f"{self._server.name} answered C-FIND with 0x{code:04X}")
        return matches

    def time_queries(self, identifier: Dataset, repeats: int, warmup: int) -> QueryTiming:
        for _ in range(warmup):
            self.find(identifier)
        wall, cpu, counts = [], [], set()
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            counts.add(self.find(identifier))
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        if len(counts) != 1:
            raise RuntimeError(f"{self._server.name}: C-FIND match counts varied: {counts}")
        return QueryTiming(
            median_ms=statistics.median(wall) * 1000,
            client_cpu_ms=statistics.median(cpu) * 1000,
            matches=counts.pop(),
        )
