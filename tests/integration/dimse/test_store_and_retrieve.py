"""Every file pydicom ships, through storescu, findscu, getscu and movescu against a running
pedipacs: statuses per the duplicate policy, exact C-FIND answers, bit-identical retrieval."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, text

from pedipacs.dicom.part10 import dataset_offset
from support.databases import postgres_is_available, server_on_fresh_database
from support.dcmtk import findscu, getscu, run, store_statuses
from support.files import DicomFile, pydicom_test_files
from support.server import RunningServer, free_port

SUCCESS, MISSING_OR_INVALID, DUPLICATE_REJECTED, IDENTITY_CONFLICT = 0x0000, 0xA900, 0xC001, 0xC002


def expected_statuses(files: list[DicomFile]) -> dict[Path, int]:
    """What pedipacs must answer for each file sent in order, under the `reject` policy."""
    first_seen: dict[str, DicomFile] = {}
    expected: dict[Path, int] = {}
    for file in files:
        if not file.has_valid_identity:
            expected[file.path] = MISSING_OR_INVALID
            continue
        stored = first_seen.setdefault(file.sop_instance_uid, file)
        if stored is file or stored.dataset_bytes == file.dataset_bytes:
            expected[file.path] = SUCCESS
        elif (stored.study_instance_uid, stored.series_instance_uid) != (
            file.study_instance_uid,
            file.series_instance_uid,
        ):
            expected[file.path] = IDENTITY_CONFLICT
        else:
            expected[file.path] = DUPLICATE_REJECTED
    return expected


@pytest.fixture(scope="module")
def stored_archive(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[RunningServer, list[DicomFile], dict[Path, list[int]]]]:
    """One server per database, with every pydicom test file sent once, one association each."""
    kind = request.param
    if kind == "postgresql" and not postgres_is_available():
        pytest.skip("PostgreSQL is not reachable")
    base = tmp_path_factory.mktemp(f"archive-{kind}")
    with server_on_fresh_database(kind, base) as server:
        files = pydicom_test_files()
        statuses = {
            file.path: store_statuses(server, file.path, transfer_syntax=file.transfer_syntax_uid)
            for file in files
        }
        yield server, files, statuses


@pytest.fixture(scope="module")
def wire_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, bytes]:
    """The dataset bytes storescu actually sends for each file (DCMTK re-encodes some files on
    the way out), as received bit-preserved by DCMTK's own storescp: the reference that
    pedipacs' stored and retrieved bytes are compared with."""
    folder = tmp_path_factory.mktemp("wire")
    port = free_port()
    receiver = subprocess.Popen(
        ["storescp", "+xa", "+B", "-aet", "WIRE", "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    received: dict[Path, bytes] = {}
    try:
        _wait_for_echo("WIRE", port)
        wire = RunningServer(folder, "", port, 0, receiver, folder / "none", ae_title="WIRE")
        for file in pydicom_test_files():
            if not file.has_valid_identity:
                continue
            store_statuses(wire, file.path, transfer_syntax=file.transfer_syntax_uid)
            written = [p for p in folder.iterdir() if p.is_file()]
            assert len(written) == 1, file.path.name
            data = written[0].read_bytes()
            received[file.path] = data[dataset_offset(data) :]
            written[0].unlink()
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    return received


pytestmark = pytest.mark.parametrize("stored_archive", ["sqlite", "postgresql"], indirect=True)


def test_every_file_gets_the_status_its_content_and_the_policy_call_for(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]], dcmtk: None
) -> None:
    _server, files, statuses = stored_archive
    expected = expected_statuses(files)
    answered = {path: codes[-1] if codes else None for path, codes in statuses.items()}
    mismatches = {
        p.name: (answered[p], expected[p]) for p in expected if answered[p] != expected[p]
    }
    assert mismatches == {}
    assert sum(1 for code in answered.values() if code == SUCCESS) >= 30


def test_cfind_at_image_level_returns_exactly_the_stored_instances(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]],
    tmp_path: Path,
    dcmtk: None,
) -> None:
    server, files, _ = stored_archive
    expected = expected_statuses(files)
    stored_uids = {f.sop_instance_uid for f in files if expected[f.path] == SUCCESS}
    studies = {f.study_instance_uid for f in files if expected[f.path] == SUCCESS}

    found: set[str] = set()
    for study in studies:
        result, responses = findscu(
            server,
            ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}", "SOPInstanceUID"],
            tmp_path / "find",
        )
        assert result.returncode == 0, result.stderr
        found |= {str(r.SOPInstanceUID) for r in responses}
    assert found == stored_uids


def test_study_level_aggregates_count_the_stored_instances(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]],
    tmp_path: Path,
    dcmtk: None,
) -> None:
    server, files, _ = stored_archive
    expected = expected_statuses(files)
    per_study: dict[str, set[str]] = defaultdict(set)
    series_per_study: dict[str, set[str]] = defaultdict(set)
    for f in files:
        if expected[f.path] == SUCCESS:
            per_study[f.study_instance_uid].add(f.sop_instance_uid)
            series_per_study[f.study_instance_uid].add(f.series_instance_uid)

    _, responses = findscu(
        server,
        [
            "QueryRetrieveLevel=STUDY",
            "StudyInstanceUID",
            "NumberOfStudyRelatedInstances",
            "NumberOfStudyRelatedSeries",
        ],
        tmp_path / "find",
    )
    answered = {
        str(r.StudyInstanceUID): (
            int(r.NumberOfStudyRelatedInstances),
            int(r.NumberOfStudyRelatedSeries),
        )
        for r in responses
    }
    assert answered == {
        study: (len(uids), len(series_per_study[study])) for study, uids in per_study.items()
    }


def test_cget_returns_the_bytes_sent_unchanged_when_the_syntax_is_accepted(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]],
    wire_bytes: dict[Path, bytes],
    tmp_path: Path,
    dcmtk: None,
) -> None:
    server, files, _ = stored_archive
    expected = expected_statuses(files)
    first_of_uid = {}
    for f in files:
        if expected[f.path] == SUCCESS:
            first_of_uid.setdefault(f.sop_instance_uid, f)
    checked = 0
    for uid, original in first_of_uid.items():
        result, received = getscu(
            server,
            [
                "QueryRetrieveLevel=IMAGE",
                f"StudyInstanceUID={original.study_instance_uid}",
                f"SeriesInstanceUID={original.series_instance_uid}",
                f"SOPInstanceUID={uid}",
            ],
            tmp_path / uid,
            prefer=original.transfer_syntax_uid,
        )
        assert result.returncode == 0, result.stderr
        if not received and not _decodable(original.path):
            # Not accepted as stored and no decoder can convert it: the sub-operation fails.
            assert "OutOfResourcesSubOperations" in result.stderr
            continue
        assert len(received) == 1, (original.path.name, result.stderr)
        data = received[0].read_bytes()
        header = dcmread(received[0], stop_before_pixels=True)
        if str(header.file_meta.TransferSyntaxUID) != original.transfer_syntax_uid:
            continue  # DCMTK could not propose this syntax; the transcoding test covers it
        returned = data[dataset_offset(data) :]
        assert returned == wire_bytes[original.path], original.path.name
        assert returned == stored_dataset_bytes(server, uid), original.path.name
        checked += 1
    assert checked >= 30


def test_cget_converts_a_jpeg_image_for_a_peer_that_accepts_only_uncompressed(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]],
    tmp_path: Path,
    dcmtk: None,
) -> None:
    server, files, _ = stored_archive
    original = next(f for f in files if f.path.name == "SC_rgb_jpeg_dcmtk.dcm")
    result, received = getscu(
        server,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={original.study_instance_uid}",
            f"SeriesInstanceUID={original.series_instance_uid}",
            f"SOPInstanceUID={original.sop_instance_uid}",
        ],
        tmp_path / "get",
        prefer="1.2.840.10008.1.2",  # +xi: implicit VR little endian only
    )
    assert result.returncode == 0, result.stderr
    assert len(received) == 1
    converted = dcmread(received[0])
    assert str(converted.file_meta.TransferSyntaxUID) in (
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
    )
    assert np.array_equal(converted.pixel_array, dcmread(original.path).pixel_array)


def test_cmove_to_a_registered_storescp_delivers_the_study_bit_identical(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]],
    wire_bytes: dict[Path, bytes],
    tmp_path: Path,
    dcmtk: None,
) -> None:
    server, files, _ = stored_archive
    expected = expected_statuses(files)
    stored = [f for f in files if expected[f.path] == SUCCESS]
    study = max(
        {f.study_instance_uid for f in stored},
        key=lambda s: sum(1 for f in stored if f.study_instance_uid == s),
    )
    wanted = {f.sop_instance_uid: f for f in stored if f.study_instance_uid == study}

    port = free_port()
    destination = tmp_path / "received"
    destination.mkdir()
    peer_name = f"archive-{port}"
    add = run(
        [
            *_pedipacs(server),
            "peer",
            "add",
            peer_name,
            "--aet",
            "MOVEDEST",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    )
    assert add.returncode == 0, add.stderr
    receiver = subprocess.Popen(
        ["storescp", "+xa", "+B", "-aet", "MOVEDEST", "-od", str(destination), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_echo("MOVEDEST", port)
        move = run(
            [
                "movescu",
                "-S",
                "-aec",
                server.ae_title,
                "-aem",
                "MOVEDEST",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                "127.0.0.1",
                str(server.dicom_port),
            ]
        )
        assert move.returncode == 0, move.stderr
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    received = {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in destination.iterdir()
    }
    assert set(received) == set(wanted)
    for uid, path in received.items():
        data = path.read_bytes()
        returned = data[dataset_offset(data) :]
        header = dcmread(path, stop_before_pixels=True)
        assert returned == stored_dataset_bytes(server, uid), wanted[uid].path.name
        if str(header.file_meta.TransferSyntaxUID) == wanted[uid].transfer_syntax_uid:
            assert returned == wire_bytes[wanted[uid].path], wanted[uid].path.name


def test_cmove_to_an_unknown_destination_is_refused_with_a801(
    stored_archive: tuple[RunningServer, list[DicomFile], dict[Path, list[int]]], dcmtk: None
) -> None:
    server, files, _ = stored_archive
    move = run(
        [
            "movescu",
            "-d",
            "-S",
            "-aec",
            server.ae_title,
            "-aem",
            "NOBODY",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={files[0].study_instance_uid or '1.2.3'}",
            "127.0.0.1",
            str(server.dicom_port),
        ]
    )
    assert "0xa801" in (move.stdout + move.stderr).lower()


def _pedipacs(server: RunningServer) -> list[str]:
    """The pedipacs command line, pointed at the running server's data and database."""
    return [
        "env",
        f"PEDIPACS_DATA_DIR={server.data_dir}",
        f"PEDIPACS_DATABASE_URL={server.database_url}",
        sys.executable,
        "-m",
        "pedipacs",
    ]


def stored_dataset_bytes(server: RunningServer, sop_instance_uid: str) -> bytes:
    """The dataset part of the blob pedipacs stored for an instance (what it received)."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            key = connection.execute(
                text("SELECT blob_key FROM instance WHERE sop_instance_uid = :uid"),
                {"uid": sop_instance_uid},
            ).scalar_one()
    finally:
        engine.dispose()
    data = (server.data_dir / "blobs" / key).read_bytes()
    return data[dataset_offset(data) :]


def _wait_for_echo(ae_title: str, port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if run(["echoscu", "-to", "2", "-aec", ae_title, "127.0.0.1", str(port)]).returncode == 0:
            return
        time.sleep(0.05)  # readiness polling interval
    raise RuntimeError(f"storescp on {port} did not answer")


def _decodable(path: Path) -> bool:
    from pedipacs.dicom.transfer_syntax import DECODING_PLUGINS

    for plugin in DECODING_PLUGINS:
        try:
            dcmread(path).decompress(decoding_plugin=plugin)
            return True
        except Exception:
            continue
    return False
