"""The serve supervisor: workers share the port, a dead worker is replaced, a port that cannot
be bound stops pedipacs with a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.dcmtk import run
from support.server import RunningServer, free_port


def worker_pids(server: RunningServer) -> set[int]:
    """The DIMSE worker processes (not multiprocessing's resource tracker)."""
    # Children are listed per thread: the supervisor's watcher thread starts replacements.
    children: list[str] = []
    for task in Path(f"/proc/{server.process.pid}/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:
            continue
    pids = set()
    for pid in children:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.add(int(pid))
        except FileNotFoundError:
            continue
    return pids


def wait_for(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)  # polling interval
    return False


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(
    server: RunningServer, dcmtk: None
) -> None:
    before = worker_pids(server)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    assert wait_for(lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server))
    for _ in range(6):  # several associations, so both workers get some
        echo = run(["echoscu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port)])
        assert echo.returncode == 0, echo.stderr
    assert "DICOM worker dimse-" in server.log()


def test_serve_stops_with_an_error_when_the_dicom_port_is_taken(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "pedipacs", "serve"],
            env={
                **os.environ,
                "PEDIPACS_DATA_DIR": str(tmp_path / "data"),
                "PEDIPACS_DATABASE_URL": database_url,
                "PEDIPACS_DICOM_PORT": str(port),
                "PEDIPACS_HTTP_PORT": str(free_port()),
                "PEDIPACS_DICOM_WORKERS": "2",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode != 0
    assert "is not available" in result.stderr
