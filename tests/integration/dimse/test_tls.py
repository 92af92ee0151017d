"""DICOM over TLS (PS3.15 Annex B, BCP 195) against a running pedipacs with DCMTK's +tls
options, and HTTPS on the HTTP port: mutual authentication, refused handshakes, the peer
registry on the TLS listener, and a clear stop when a TLS file is wrong."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from support.certificates import Issued
from support.certificates import TestAuthority as Authority  # "Test*" would be collected
from support.dcmtk import run
from support.files import PYDICOM_TEST_FILES
from support.server import RunningServer, free_port, start_server

CT_SMALL = PYDICOM_TEST_FILES / "CT_small.dcm"


@dataclass(frozen=True)
class TlsNode:
    server: RunningServer
    tls_port: int
    authority: Authority
    client: Issued

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.server.http_port}"

    def tls_flags(self, identity: Issued | None = None, trusted: Path | None = None) -> list[str]:
        """DCMTK's TLS options: our key and certificate, and the authority we trust."""
        identity = identity or self.client
        return ["+tls", str(identity.key), str(identity.certificate),
                "+cf", str(trusted or self.authority.ca_file)]  # fmt: skip

    def echo(self, *flags: str, calling_ae: str = "ECHOSCU") -> subprocess.CompletedProcess[str]:
        return run(["echoscu", "-aet", calling_ae, "-aec", self.server.ae_title, *flags,
                    "127.0.0.1", str(self.tls_port)])  # fmt: skip


def start_tls_node(
    tmp_path: Path, database_url: str, *, extra_env: dict[str, str] | None = None
) -> TlsNode:
    authority = Authority.create(tmp_path / "pki")
    identity = authority.issue("pedipacs")
    tls_port = free_port()
    server = start_server(
        tmp_path / "server",
        database_url,
        extra_env={
            "PEDIPACS_TLS_CERTIFICATE_FILE": str(identity.certificate),
            "PEDIPACS_TLS_KEY_FILE": str(identity.key),
            "PEDIPACS_TLS_CA_FILE": str(authority.ca_file),
            "PEDIPACS_DICOM_TLS_PORT": str(tls_port),
            **(extra_env or {}),
        },
    )
    return TlsNode(server, tls_port, authority, authority.issue("modality", server=False))


@pytest.fixture
def tls_node(tmp_path: Path, database_url: str, dcmtk: None) -> Iterator[TlsNode]:
    node = start_tls_node(tmp_path, database_url)
    yield node
    node.server.stop()


@pytest.fixture
def guarded_tls_node(tmp_path: Path, database_url: str, dcmtk: None) -> Iterator[TlsNode]:
    """Unknown calling AE titles refused, on the TLS listener too."""
    node = start_tls_node(
        tmp_path, database_url, extra_env={"PEDIPACS_ACCEPT_UNKNOWN_CALLING_AES": "false"}
    )
    yield node
    node.server.stop()


def find_studies(node: TlsNode, output_dir: Path, flags: Sequence[str]) -> list[str]:
    output_dir.mkdir(parents=True, exist_ok=True)
    found = run(["findscu", "-S", "-aec", node.server.ae_title, *flags, "-X",
                 "-od", str(output_dir), "-k", "QueryRetrieveLevel=STUDY",
                 "-k", "StudyInstanceUID=", "127.0.0.1", str(node.tls_port)])  # fmt: skip
    assert found.returncode == 0, found.stderr
    return [str(dcmread(path).StudyInstanceUID) for path in sorted(output_dir.glob("rsp*.dcm"))]


def test_echo_store_and_find_over_tls_with_a_client_certificate(
    tls_node: TlsNode, tmp_path: Path
) -> None:
    echoed = tls_node.echo(*tls_node.tls_flags())
    stored = run(["storescu", "-aec", tls_node.server.ae_title, *tls_node.tls_flags(),
                  "127.0.0.1", str(tls_node.tls_port), str(CT_SMALL)])  # fmt: skip
    studies = find_studies(tls_node, tmp_path / "found", tls_node.tls_flags())
    plain = run(["echoscu", "-aec", tls_node.server.ae_title,
                 "127.0.0.1", str(tls_node.server.dicom_port)])  # fmt: skip

    assert echoed.returncode == 0, echoed.stderr
    assert stored.returncode == 0, stored.stderr
    assert studies == [str(dcmread(CT_SMALL, stop_before_pixels=True).StudyInstanceUID)]
    assert plain.returncode == 0, plain.stderr  # the plain port keeps serving


def test_a_client_without_a_certificate_is_refused_at_the_handshake(tls_node: TlsNode) -> None:
    # +tla: TLS without a client certificate, still trusting pedipacs' authority.
    echoed = tls_node.echo("+tla", "+cf", str(tls_node.authority.ca_file))

    assert echoed.returncode != 0
    assert "Association Accepted" not in echoed.stdout + echoed.stderr
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in tls_node.server.log()
    # TLS 1.3 sends the alert inside the failing handshake: the client may be gone before the
    # record is written, so the record is awaited (bounded), not expected at once.
    alerts: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        alerts = tls_node.server.security_alerts()
        if any("(110126, DCM, Node Authentication)" in detail for detail in alerts):
            break
        time.sleep(0.2)
    assert any(
        "(110126, DCM, Node Authentication)" in detail
        and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in detail
        for detail in alerts
    ), alerts


def test_a_client_certificate_from_another_authority_is_refused(
    tls_node: TlsNode, tmp_path: Path
) -> None:
    stranger = Authority.create(tmp_path / "stranger-pki", name="stranger CA").issue(
        "intruder", server=False
    )

    echoed = tls_node.echo(*tls_node.tls_flags(identity=stranger))

    assert echoed.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in tls_node.server.log()


def test_a_client_that_does_not_trust_the_server_certificate_gives_up(
    tls_node: TlsNode, tmp_path: Path
) -> None:
    other = Authority.create(tmp_path / "other-pki", name="other CA")

    echoed = tls_node.echo(*tls_node.tls_flags(trusted=other.ca_file))

    assert echoed.returncode != 0
    assert "certificate verify failed" in echoed.stdout + echoed.stderr


def test_plain_dicom_on_the_tls_port_is_refused(tls_node: TlsNode) -> None:
    echoed = tls_node.echo()

    assert echoed.returncode != 0
    assert "Association Accepted" not in echoed.stdout + echoed.stderr


def test_tls_1_1_is_refused_and_tls_1_2_accepted(tls_node: TlsNode) -> None:
    def handshake(maximum: ssl.TLSVersion) -> str | None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(tls_node.authority.ca_file)
        context.load_cert_chain(tls_node.client.certificate, tls_node.client.key)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this OpenSSL offer TLS 1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1: the point here
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
        with (
            socket.create_connection(("127.0.0.1", tls_node.tls_port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as connection,
        ):
            return connection.version()

    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        handshake(ssl.TLSVersion.TLSv1_1)
    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_silent_connections_do_not_hold_up_the_tls_listener(tls_node: TlsNode) -> None:
    # Connections that never start a handshake, spread over both workers by the kernel.
    silent = [socket.create_connection(("127.0.0.1", tls_node.tls_port)) for _ in range(8)]
    try:
        echoed = tls_node.echo(*tls_node.tls_flags())
    finally:
        for connection in silent:
            connection.close()

    assert echoed.returncode == 0, echoed.stderr


def test_an_unknown_calling_ae_over_tls_is_rejected_and_a_registered_one_admitted(
    guarded_tls_node: TlsNode,
) -> None:
    refused = guarded_tls_node.echo(*guarded_tls_node.tls_flags(), calling_ae="STRANGER")
    guarded_tls_node.server.register_peer("WARDWS", allow="store,find")
    admitted = guarded_tls_node.echo(*guarded_tls_node.tls_flags(), calling_ae="WARDWS")

    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    assert admitted.returncode == 0, admitted.stderr


def test_https_answers_a_client_that_trusts_the_authority(tls_node: TlsNode) -> None:
    trusting = ssl.create_default_context(cafile=tls_node.authority.ca_file)

    # No client certificate: people and DICOMweb clients sign in instead.
    health = httpx.get(f"{tls_node.https_url}/healthz", verify=trusting)

    assert health.json() == {"status": "ok"}
    assert health.url.scheme == "https"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{tls_node.https_url}/healthz", verify=ssl.create_default_context())
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{tls_node.server.http_url}/healthz")  # plain HTTP on the HTTPS port


def serve_until_it_stops(
    tmp_path: Path, database_url: str, identity: Issued, *, tls_port: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`pedipacs serve` expected to stop by itself at start-up."""
    return subprocess.run(
        [sys.executable, "-m", "pedipacs", "serve"],
        env={
            **os.environ,
            "PEDIPACS_DATA_DIR": str(tmp_path / "data"),
            "PEDIPACS_DATABASE_URL": database_url,
            "PEDIPACS_DICOM_PORT": str(free_port()),
            "PEDIPACS_HTTP_PORT": str(free_port()),
            "PEDIPACS_DICOM_TLS_PORT": str(tls_port or free_port()),
            "PEDIPACS_DICOM_WORKERS": "2",
            "PEDIPACS_TLS_CERTIFICATE_FILE": str(identity.certificate),
            "PEDIPACS_TLS_KEY_FILE": str(identity.key),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_serve_stops_naming_the_key_file_when_it_does_not_match_the_certificate(
    tmp_path: Path, database_url: str
) -> None:
    authority = Authority.create(tmp_path / "pki")
    server_identity, other = authority.issue("pedipacs"), authority.issue("other")
    mismatched = Issued(server_identity.certificate, other.key)

    result = serve_until_it_stops(tmp_path, database_url, mismatched)

    assert result.returncode != 0
    assert f"TLS private key file {other.key} does not belong" in result.stderr


def test_serve_stops_when_the_dicom_tls_port_is_taken(tmp_path: Path, database_url: str) -> None:
    identity = Authority.create(tmp_path / "pki").issue("pedipacs")
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = serve_until_it_stops(tmp_path, database_url, identity, tls_port=port)

    assert result.returncode != 0
    assert f"DICOM TLS port 127.0.0.1:{port} is not available" in result.stderr
