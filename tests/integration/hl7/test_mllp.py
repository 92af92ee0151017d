"""HL7 v2 over MLLP against a running `pedipacs serve`, with a raw socket as the sender:
registrations and orders applied and acknowledged, duplicates applied once, malformed
messages refused without a trace, framing whatever TCP does, oversize frames and unknown
senders refused and audited, and MLLP over TLS."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from pedipacs.db.tables import ImagingOrder, Patient, ScheduledStep
from support import hl7_samples as samples
from support.certificates import TestAuthority as Authority  # "Test*" would be collected
from support.databases import count_rows
from support.hl7_samples import MllpClient, ack_code, ack_fields, framed
from support.server import RunningServer, free_port, start_server


@dataclass(frozen=True)
class Hl7Node:
    server: RunningServer
    port: int

    def count(self, table: type) -> int:
        return count_rows(self.server.database_url, table)

    def order_status(self, accession: str) -> str | None:
        engine = create_engine(self.server.database_url)
        try:
            with engine.connect() as connection:
                return connection.scalar(
                    select(ImagingOrder.status).where(ImagingOrder.accession_number == accession)
                )
        finally:
            engine.dispose()


def eventually_alerted(server: RunningServer, text: str, timeout: float = 10.0) -> list[str]:
    """The security alerts once one holds `text` (or at the deadline). A refused TLS client
    learns of the refusal from the handshake itself, before pedipacs has written its audit
    record: the record is polled for, as readiness is."""
    deadline = time.monotonic() + timeout
    while True:
        alerts = server.security_alerts()
        if any(text in alert for alert in alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(0.1)  # polling interval, not a wait for an outcome


def start_hl7_node(tmp_path: Path, database_url: str, **env: str) -> Hl7Node:
    port = free_port()
    server = start_server(
        tmp_path / "server",
        database_url,
        extra_env={"PEDIPACS_HL7_PORT": str(port), "PEDIPACS_HL7_SENDERS": '["HIS"]', **env},
    )
    return Hl7Node(server, port)


@pytest.fixture
def hl7_node(tmp_path: Path, database_url: str) -> Iterator[Hl7Node]:
    node = start_hl7_node(tmp_path, database_url)
    yield node
    node.server.stop()


def test_registration_then_order_placed_changed_and_cancelled(hl7_node: Hl7Node) -> None:
    with MllpClient(hl7_node.port) as client:
        registered = client.send(samples.adt())
        placed = client.send(samples.orm())
        omi = client.send(samples.omi())
        status_after_placing = hl7_node.order_status(samples.ACCESSION)
        changed = client.send(samples.orm("ORM0002", "XO", station="US_NICU_2"))
        cancelled = client.send(samples.orm("ORM0003", "CA"))

    assert [ack_code(a) for a in (registered, placed, omi, changed, cancelled)] == ["AA"] * 5
    assert ack_fields(placed)["MSA"][2] == "ORM0001"
    assert ack_fields(placed)["MSH"][8] == "ACK^O01^ACK"
    assert hl7_node.count(Patient) == 1
    assert status_after_placing == "scheduled"
    assert hl7_node.order_status(samples.ACCESSION) == "cancelled"
    assert hl7_node.order_status(samples.OMI_ACCESSION) == "scheduled"
    engine = create_engine(hl7_node.server.database_url)
    try:
        with engine.connect() as connection:
            stations = connection.scalars(
                select(ScheduledStep.station_ae_title).order_by(ScheduledStep.station_ae_title)
            ).all()
            mother = connection.execute(
                text("SELECT mother_identifier, birth_order FROM patient")
            ).one()
    finally:
        engine.dispose()
    assert stations == ["US_NICU_2", "XR_NICU_1"]
    assert tuple(mother) == (samples.MOTHER_MRN, 2)


def test_a_duplicate_control_id_is_answered_alike_and_applied_once(hl7_node: Hl7Node) -> None:
    with MllpClient(hl7_node.port) as client:
        first = client.send(samples.orm())
    with MllpClient(hl7_node.port) as client:  # a resend after a lost connection
        again = client.send(samples.orm())

    assert ack_code(first) == ack_code(again) == "AA"
    assert ack_fields(again)["MSA"][2] == "ORM0001"
    assert hl7_node.count(ImagingOrder) == 1


def test_malformed_messages_are_refused_and_change_nothing(hl7_node: Hl7Node) -> None:
    malformed = {
        "bad segment name": samples.adt().replace(b"\rPV1|", b"\rPV-|"),
        "missing PID-3": samples.with_field(samples.adt("ADT0002"), "PID", 3, ""),
        "wrong encoding characters": samples.adt("ADT0003").replace(b"|^~\\&|", b"|^~\\^|"),
        "order without PID": samples.without_segment(samples.orm("ORM0004"), "PID"),
        "unsupported event": samples.adt("ADT0005", event="A37"),
        "not HL7": b"GET / HTTP/1.1\r\nHost: pedipacs\r\n\r\n",
    }

    with MllpClient(hl7_node.port) as client:
        codes = {name: ack_code(client.send(data)) for name, data in malformed.items()}
        err = ack_fields(client.send(malformed["unsupported event"]))["ERR"]

    assert codes == {
        "bad segment name": "AE",
        "missing PID-3": "AE",
        "wrong encoding characters": "AE",
        "order without PID": "AE",
        "unsupported event": "AR",
        "not HL7": "AR",
    }
    assert err[3].startswith("201^")
    assert (hl7_node.count(Patient), hl7_node.count(ImagingOrder)) == (0, 0)


def test_frames_are_found_whatever_the_tcp_writes(hl7_node: Hl7Node) -> None:
    registration = framed(samples.adt())
    third = len(registration) // 3
    two_orders = framed(samples.orm()) + framed(samples.omi())

    with MllpClient(hl7_node.port) as client:
        for start in (0, third, 2 * third):
            client.write(registration[start : start + third if start < 2 * third else None])
        split = client.read()
        client.write(b"\r\n" + two_orders)  # stray bytes, then two frames in one write
        both = [client.read(), client.read()]

    assert ack_code(split) == "AA"
    assert [ack_fields(a)["MSA"][1:3] for a in both] == [["AA", "ORM0001"], ["AA", "OMI0001"]]
    assert hl7_node.count(ImagingOrder) == 2


def test_an_unknown_sender_is_rejected_with_a_security_alert(hl7_node: Hl7Node) -> None:
    foreign = samples.adt().replace(b"MSH|^~\\&|HIS|", b"MSH|^~\\&|LAB|")

    [ack] = samples.exchange(hl7_node.port, foreign)

    assert ack_code(ack) == "AR"
    assert hl7_node.count(Patient) == 0
    assert any("'LAB'" in alert for alert in hl7_node.server.security_alerts())


def test_an_oversize_frame_or_a_silent_peer_is_disconnected(
    tmp_path: Path, database_url: str
) -> None:
    node = start_hl7_node(
        tmp_path, database_url, PEDIPACS_MAX_HL7_MESSAGE="4096", PEDIPACS_NETWORK_TIMEOUT="2"
    )
    try:
        with MllpClient(node.port) as client:
            try:
                client.write(b"\x0b" + b"X" * 8192)
                closed = client.read()
            except ConnectionError:
                closed = b""
        with MllpClient(node.port) as client:
            silent = client.connection.recv(1)  # the server closes an idle connection
        with MllpClient(node.port) as client:
            still_serving = client.send(samples.adt())
        alerts = node.server.security_alerts()
    finally:
        node.server.stop()

    assert closed == b""
    assert silent == b""
    assert ack_code(still_serving) == "AA"
    assert any("longer than 4096 bytes" in alert for alert in alerts)


def test_mllp_over_tls_with_a_client_certificate(tmp_path: Path, database_url: str) -> None:
    authority = Authority.create(tmp_path / "pki")
    identity = authority.issue("pedipacs")
    his = authority.issue("his", server=False)
    tls_port = free_port()
    node = start_hl7_node(
        tmp_path,
        database_url,
        PEDIPACS_TLS_CERTIFICATE_FILE=str(identity.certificate),
        PEDIPACS_TLS_KEY_FILE=str(identity.key),
        PEDIPACS_TLS_CA_FILE=str(authority.ca_file),
        PEDIPACS_DICOM_TLS_PORT=str(free_port()),
        PEDIPACS_HL7_TLS_PORT=str(tls_port),
    )
    try:
        context = ssl.create_default_context(cafile=str(authority.ca_file))
        context.load_cert_chain(his.certificate, his.key)
        with socket.create_connection(("127.0.0.1", tls_port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as secure:  # fmt: skip
            secure.sendall(framed(samples.adt()))
            answer = b""
            while b"\x1c" not in answer:
                chunk = secure.recv(65536)
                assert chunk, "closed without an answer"
                answer += chunk
        anonymous = ssl.create_default_context(cafile=str(authority.ca_file))
        with socket.create_connection(("127.0.0.1", tls_port), timeout=30) as raw:
            try:
                with anonymous.wrap_socket(raw, server_hostname="127.0.0.1") as secure:
                    secure.sendall(framed(samples.adt("ADT0002")))
                    refused = secure.recv(65536)
            except (ssl.SSLError, ConnectionError):
                refused = b""
        alerts = eventually_alerted(node.server, "TLS handshake")
    finally:
        node.server.stop()

    assert ack_code(answer[answer.index(b"\x0b") + 1 : answer.index(b"\x1c")]) == "AA"
    assert refused == b""
    assert any("TLS handshake" in alert for alert in alerts), node.server.log()


def test_serve_stops_with_an_error_when_the_hl7_port_is_taken(
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
                "PEDIPACS_DICOM_PORT": str(free_port()),
                "PEDIPACS_HTTP_PORT": str(free_port()),
                "PEDIPACS_DICOM_WORKERS": "1",
                "PEDIPACS_HL7_PORT": str(port),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert result.returncode != 0
    assert f"HL7 port 127.0.0.1:{port}" in result.stderr
    assert "is not available" in result.stderr
