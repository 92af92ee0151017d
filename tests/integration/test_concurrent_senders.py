"""Twenty storescu processes send the same study at the same moment.

Every one of them gets every instance acknowledged (an identical re-send is a success), and the
archive ends with exactly one copy of each instance: one index row, one blob, one NEW_INSTANCE
change, and study/series/patient aggregates that count each instance once.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from pedipacs.db.tables import Change, Instance, InstanceConflict, Patient, Series, Study
from pedipacs.demo.generator import generate_small_instances
from pedipacs.storage.filesystem import TEMP_DIR_NAME
from support.dcmtk import findscu
from support.server import RunningServer

SENDERS = 20
INSTANCES = 30
DEADLINE_SECONDS = 120.0

# storescu -v prints one line per file sent and one per response, in order.
SENDING_FILE = "I: Sending file: "
STORE_RESPONSE = "I: Received Store Response ("
SUCCESS_RESPONSE = "I: Received Store Response (Success)"


def responses_by_file(log: str) -> dict[str, list[str]]:
    """Each file storescu sent and the response lines it got for it."""
    responses: dict[str, list[str]] = {}
    current: str | None = None
    for line in log.splitlines():
        if line.startswith(SENDING_FILE):
            current = line.removeprefix(SENDING_FILE)
            responses.setdefault(current, [])
        elif line.startswith(STORE_RESPONSE):
            assert current is not None, line
            responses[current].append(line)
    return responses


def test_twenty_concurrent_senders_of_one_study_leave_exactly_one_copy_of_each_instance(
    server: RunningServer, tmp_path: Path, dcmtk: None
) -> None:
    files = generate_small_instances(tmp_path / "study", INSTANCES, per_study=INSTANCES)
    sent = {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in files}
    first = dcmread(files[0], stop_before_pixels=True)
    logs = [tmp_path / f"storescu-{number:02d}.log" for number in range(SENDERS)]
    # DCMTK leaves Nagle's algorithm on unless told; every C-STORE would wait ~40 ms.
    env = {**os.environ, "TCP_NODELAY": "1"}

    processes: list[subprocess.Popen[bytes]] = []
    try:
        for number, log in enumerate(logs):
            with log.open("wb") as output:
                processes.append(
                    subprocess.Popen(
                        [
                            "storescu",
                            "-v",
                            "-aet",
                            f"SENDER{number:02d}",
                            "-aec",
                            server.ae_title,
                            "127.0.0.1",
                            str(server.dicom_port),
                            *map(str, files),
                        ],
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
        exit_codes = [process.wait(timeout=DEADLINE_SECONDS) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for number, (code, log) in enumerate(zip(exit_codes, logs, strict=True)):
        text = log.read_text()
        assert code == 0, f"sender {number} exited {code}:\n{text[-2000:]}"
        responses = responses_by_file(text)
        assert sorted(responses) == sorted(map(str, files)), f"sender {number} skipped files"
        for name, lines in responses.items():
            assert lines == [SUCCESS_RESPONSE], f"sender {number}, {name}: {lines}"

    engine = create_engine(server.database_url)
    try:
        with Session(engine) as session:
            instances = session.execute(select(Instance.sop_instance_uid, Instance.blob_key))
            blob_keys = {uid: key for uid, key in instances}
            study = session.scalars(select(Study)).one()
            series = session.scalars(select(Series)).one()
            patient = session.scalars(select(Patient)).one()
            changes = Counter(
                (change_type, uid)
                for change_type, uid in session.execute(select(Change.change_type, Change.uid))
            )
            conflicts = session.scalars(select(InstanceConflict.id)).all()
    finally:
        engine.dispose()

    assert set(blob_keys) == sent
    blob_root = server.data_dir / "blobs"
    blob_files = {
        path.relative_to(blob_root).as_posix()
        for path in blob_root.rglob("*")
        if path.is_file() and TEMP_DIR_NAME not in path.relative_to(blob_root).parts
    }
    assert blob_files == set(blob_keys.values())  # one blob per instance, no stray copy
    assert list((blob_root / TEMP_DIR_NAME).iterdir()) == []
    assert (
        study.number_of_study_related_instances,
        study.number_of_study_related_series,
        series.number_of_series_related_instances,
    ) == (INSTANCES, 1, INSTANCES)
    assert (
        patient.number_of_patient_related_studies,
        patient.number_of_patient_related_series,
        patient.number_of_patient_related_instances,
    ) == (1, 1, INSTANCES)
    assert changes == Counter(("NEW_INSTANCE", uid) for uid in sent)
    assert conflicts == []  # identical re-sends are not conflicts

    result, studies = findscu(
        server,
        [
            "QueryRetrieveLevel=STUDY",
            f"StudyInstanceUID={first.StudyInstanceUID}",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ],
        tmp_path / "find-study",
    )
    assert result.returncode == 0, result.stderr
    assert [
        (int(s.NumberOfStudyRelatedSeries), int(s.NumberOfStudyRelatedInstances)) for s in studies
    ] == [(1, INSTANCES)]
    result, series_found = findscu(
        server,
        [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={first.StudyInstanceUID}",
            "SeriesInstanceUID",
            "NumberOfSeriesRelatedInstances",
        ],
        tmp_path / "find-series",
    )
    assert result.returncode == 0, result.stderr
    assert [(s.SeriesInstanceUID, int(s.NumberOfSeriesRelatedInstances)) for s in series_found] == [
        (first.SeriesInstanceUID, INSTANCES)
    ]
