"""Bad input over the network: each gets its DIMSE failure status and leaves nothing behind."""

from __future__ import annotations

import socket
import struct
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dsutils import create_file_meta
from sqlalchemy import create_engine, func, select

from pedipacs.db.tables import Instance
from pedipacs.dicom.part10 import dataset_offset
from support.dcmtk import findscu
from support.files import PYDICOM_TEST_FILES
from support.server import RunningServer

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _part10(sop_instance_uid: str, dataset_bytes: bytes) -> bytes:
    """A File Meta header (valid) in front of whatever dataset bytes the test wants to send."""
    buffer = BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    meta = create_file_meta(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax=ExplicitVRLittleEndian,
    )
    write_file_meta_info(buffer, meta)  # type: ignore[arg-type]
    return buffer.getvalue() + dataset_bytes


@pytest.fixture
def raw_sender() -> Iterator[AE]:
    """pynetdicom as a peer that sends file bytes unparsed (DCMTK refuses to send bad files)."""
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="BADSENDER")
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    yield ae
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous
    ae.shutdown()


def _send(ae: AE, server: RunningServer, path: Path) -> int:
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
        return int(status.Status)
    finally:
        assoc.release()


def _count(server: RunningServer, model: type) -> int:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(model)).scalar_one())
    finally:
        engine.dispose()


def _blob_files(server: RunningServer) -> list[Path]:
    root = server.data_dir / "blobs"
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("case", "expected_status"),
    [
        ("garbage", 0xC000),
        ("truncated", 0xC000),
        ("no_sop_instance_uid", 0xA900),
        ("invalid_study_uid", 0xA900),
    ],
)
def test_bad_object_is_refused_with_its_status_and_leaves_nothing_behind(
    server: RunningServer, raw_sender: AE, tmp_path: Path, case: str, expected_status: int
) -> None:
    ct = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    uid = "1.2.826.0.1.3680043.8.498.1"
    if case == "garbage":
        payload = _part10(uid, b"this is not a DICOM dataset at all" * 20)
    elif case == "truncated":
        full = (PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()
        payload = _part10(uid, full[500:4000])
    else:
        ct.SOPInstanceUID = uid
        if case == "no_sop_instance_uid":
            del ct.SOPInstanceUID
        else:
            with warnings.catch_warnings():  # pydicom warns: the invalid value is the point
                warnings.simplefilter("ignore")
                ct.StudyInstanceUID = "1.2.03.4"  # a leading zero breaks PS3.5 9.1
        encoded = BytesIO()
        ct.save_as(encoded, enforce_file_format=True)
        data = encoded.getvalue()
        payload = _part10(uid, data[dataset_offset(data) :])
    path = tmp_path / "bad.dcm"
    path.write_bytes(payload)

    assert _send(raw_sender, server, path) == expected_status
    assert _count(server, Instance) == 0
    assert _blob_files(server) == []
    assert list((server.data_dir / "blobs" / ".incoming").iterdir()) == []


def test_a_pdu_longer_than_negotiated_drops_only_that_connection(
    server: RunningServer, tmp_path: Path, dcmtk: None
) -> None:
    with socket.create_connection(("127.0.0.1", server.dicom_port), timeout=10) as sock:
        # An A-ASSOCIATE-RQ PDU header declaring 4 GiB - 1 of body, then some bytes.
        sock.sendall(struct.pack(">BBL", 0x01, 0x00, 0xFFFFFFFF) + b"\x00" * 1024)
        sock.settimeout(10)
        answer = sock.recv(1024)
        # The server closes the connection, or sends an A-ABORT (PDU type 0x07) first.
        assert answer == b"" or answer[0] == 0x07
    result, _ = findscu(server, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"], tmp_path / "find")
    assert result.returncode == 0, result.stderr
    assert "declared a 4294967295 byte PDU" in server.log()


def test_an_object_larger_than_the_limit_is_cut_off_while_it_arrives(
    tmp_path: Path, database_url: str, dcmtk: None
) -> None:
    from support.dcmtk import storescu
    from support.server import start_server

    limit = 1_000_000
    server = start_server(
        tmp_path / "server", database_url, extra_env={"PEDIPACS_MAX_OBJECT_SIZE": str(limit)}
    )
    try:
        big = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
        big.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
        big.file_meta.MediaStorageSOPInstanceUID = big.SOPInstanceUID
        big.Rows = big.Columns = 1024
        big.PixelData = b"\x00\x01" * (1024 * 1024)  # 2 MiB of pixels
        path = tmp_path / "big.dcm"
        big.save_as(path, enforce_file_format=True)

        refused = storescu(server, [path])
        assert refused.returncode != 0
        assert _count(server, Instance) == 0
        assert _blob_files(server) == []
        assert "object size limit" in server.log()

        small = storescu(server, [PYDICOM_TEST_FILES / "CT_small.dcm"])
        assert small.returncode == 0, small.stderr
        assert _count(server, Instance) == 1
    finally:
        server.stop()
