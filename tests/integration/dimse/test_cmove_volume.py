"""C-MOVE of a few hundred instances to a fast destination, several times: every instance
arrives, and no move waits for a network timeout (pynetdicom's reactor race, see
pedipacs.dimse.sending.pause_reactor)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pydicom import dcmread

from pedipacs.demo.generator import generate_small_instances
from support.dcmtk import run, storescu
from support.server import RunningServer, free_port

INSTANCES = 300
ROUNDS = 3


def test_repeated_large_cmoves_deliver_every_instance_promptly(
    server: RunningServer, tmp_path: Path, dcmtk: None
) -> None:
    files = generate_small_instances(tmp_path / "files", INSTANCES, per_study=INSTANCES)
    stored = storescu(server, files)
    assert stored.returncode == 0, stored.stderr
    study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)

    port = free_port()
    add = run(
        [
            "env",
            f"PEDIPACS_DATA_DIR={server.data_dir}",
            f"PEDIPACS_DATABASE_URL={server.database_url}",
            sys.executable,
            "-m",
            "pedipacs",
            "peer",
            "add",
            "fast",
            "--aet",
            "FASTDEST",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    )
    assert add.returncode == 0, add.stderr
    for round_number in range(ROUNDS):
        destination = tmp_path / f"round-{round_number}"
        destination.mkdir()
        receiver = subprocess.Popen(
            ["storescp", "+xa", "-aet", "FASTDEST", "-od", str(destination), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"TCP_NODELAY": "1"},
        )
        try:
            deadline = time.monotonic() + 20
            while run(["echoscu", "-aec", "FASTDEST", "127.0.0.1", str(port)]).returncode:
                assert time.monotonic() < deadline
                time.sleep(0.05)  # readiness polling interval
            started = time.monotonic()
            move = run(
                [
                    "movescu",
                    "-S",
                    "-aec",
                    server.ae_title,
                    "-aem",
                    "FASTDEST",
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={study}",
                    "127.0.0.1",
                    str(server.dicom_port),
                ],
                timeout=120,
            )
            elapsed = time.monotonic() - started
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
        assert move.returncode == 0, move.stderr
        assert len(list(destination.iterdir())) == INSTANCES
        # A stolen response costs the 60 s network timeout; a healthy move takes seconds.
        assert elapsed < 45, f"round {round_number} took {elapsed:.0f} s"
