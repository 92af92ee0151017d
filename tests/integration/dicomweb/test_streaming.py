"""A study far larger than what the server may hold goes in by STOW-RS and out by WADO-RS,
streamed: the server's peak memory grows by a fraction of the study's size."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from support.files import PYDICOM_TEST_FILES
from support.server import RunningServer

INSTANCES = 100
ROWS, COLUMNS = 1024, 1024  # 16-bit: 2 MiB of pixels each, 200 MiB in all
MEMORY_BOUND = 100 * 1024 * 1024  # half the study


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def large_study(study: str) -> Iterator[bytes]:
    """The body of one STOW-RS request holding the whole study, produced as it is sent."""
    dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Rows, dataset.Columns = ROWS, COLUMNS
    pixels = np.random.default_rng(7).integers(0, 4000, (ROWS, COLUMNS), dtype=np.uint16)
    dataset.PixelData = pixels.tobytes()
    for number in range(1, INSTANCES + 1):
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.InstanceNumber = number
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        yield b"--big\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n"
    yield b"--big--\r\n"


def test_a_large_study_is_stored_and_retrieved_without_being_held_in_memory(
    web_server: RunningServer,
) -> None:
    if not web_server.database_url.startswith("sqlite"):
        pytest.skip("a memory test: one database is enough")
    study = generate_uid()
    before = peak_rss(web_server.process.pid)

    stored = web_server.post(
        f"{web_server.http_url}/dicomweb/studies",
        content=large_study(study),
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=big'},
        timeout=300,
    )
    after_store = peak_rss(web_server.process.pid)
    received = 0
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    with web_server.stream(
        "GET",
        f"{web_server.http_url}/dicomweb/studies/{study}",
        headers={"Accept": accept},
        timeout=300,
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
    after_retrieve = peak_rss(web_server.process.pid)

    assert stored.status_code == 200, stored.text[:500]
    assert len(stored.json()["00081199"]["Value"]) == INSTANCES
    assert received > INSTANCES * ROWS * COLUMNS * 2
    assert after_store - before < MEMORY_BOUND, f"STOW grew the peak by {after_store - before}"
    assert after_retrieve - before < MEMORY_BOUND, (
        f"WADO grew the peak by {after_retrieve - before}"
    )
