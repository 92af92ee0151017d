"""The TLS profile (BCP 195): TLS 1.2 at least, ECDHE AEAD suites, client certificates when an
authority is configured, and configuration mistakes reported with the file named.

Handshakes run in memory (ssl.MemoryBIO), without sockets or threads."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pedipacs.errors import InvalidInput, TlsConfigurationError
from pedipacs.security.tls import client_context, server_context
from support.certificates import Issued
from support.certificates import TestAuthority as Authority  # "Test*" would be collected


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("other-pki"), name="another CA")


@pytest.fixture(scope="module")
def server_identity(authority: Authority) -> Issued:
    return authority.issue("pedipacs")


@pytest.fixture(scope="module")
def client_identity(authority: Authority) -> Issued:
    return authority.issue("modality", server=False)


def shake_hands(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a handshake between two contexts; an SSLError from either side propagates."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_end = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    server_end = server.wrap_bio(server_in, server_out, server_side=True)
    finished: set[int] = set()
    for _ in range(10):
        for end in (client_end, server_end):
            if id(end) not in finished:
                try:
                    end.do_handshake()
                    finished.add(id(end))
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if len(finished) == 2:
            return client_end, server_end
    raise AssertionError("the handshake did not finish")


def peer_client(
    authority: Authority,
    identity: Issued | None = None,
    *,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A permissive client, as an old or badly configured peer would be."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(authority.ca_file)
    if identity is not None:
        context.load_cert_chain(identity.certificate, identity.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated: the point
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def test_a_client_with_a_certificate_of_the_authority_is_accepted_with_tls_1_3(
    authority: Authority, server_identity: Issued, client_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key, authority.ca_file)

    _, server_end = shake_hands(server, peer_client(authority, client_identity))

    certificate = server_end.getpeercert()
    assert server_end.version() == "TLSv1.3"
    assert certificate is not None
    assert (("commonName", "modality"),) in certificate["subject"]


def test_a_client_certificate_is_required_when_an_authority_is_configured(
    authority: Authority, server_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key, authority.ca_file)

    assert server.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
        shake_hands(server, peer_client(authority))


def test_a_client_certificate_of_another_authority_is_refused(
    authority: Authority, stranger: Authority, server_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key, authority.ca_file)
    foreign = stranger.issue("intruder", server=False)

    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        shake_hands(server, peer_client(authority, foreign))


def test_no_client_certificate_is_asked_for_without_an_authority(
    authority: Authority, server_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key)

    _, server_end = shake_hands(server, peer_client(authority))

    assert server.verify_mode == ssl.CERT_NONE
    assert server_end.getpeercert() is None


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_protocol_versions_below_tls_1_2_are_refused(
    authority: Authority, server_identity: Issued, version: str
) -> None:
    server = server_context(server_identity.certificate, server_identity.key)
    # SECLEVEL=0 lets this OpenSSL offer the old versions at all.
    old_client = peer_client(
        authority, maximum=getattr(ssl.TLSVersion, version), ciphers="DEFAULT:@SECLEVEL=0"
    )

    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL"):
        shake_hands(server, old_client)


def test_tls_1_2_negotiates_an_ecdhe_aead_suite(
    authority: Authority, server_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key)

    client_end, _ = shake_hands(server, peer_client(authority, maximum=ssl.TLSVersion.TLSv1_2))

    cipher = client_end.cipher()
    assert cipher is not None
    assert client_end.version() == "TLSv1.2"
    assert cipher[0].startswith("ECDHE-")
    assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]


def test_tls_1_2_suites_are_all_forward_secret_and_authenticated_encryption(
    server_identity: Issued,
) -> None:
    server = server_context(server_identity.certificate, server_identity.key)

    tls12 = [cipher for cipher in server.get_ciphers() if cipher["protocol"] == "TLSv1.2"]

    assert tls12
    assert all(cipher["kea"] == "kx-ecdhe" and cipher["aead"] for cipher in tls12)


def test_a_cbc_only_client_finds_no_shared_suite(
    authority: Authority, server_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key)
    cbc_client = peer_client(
        authority, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA256"
    )

    with pytest.raises(ssl.SSLError, match="NO_SHARED_CIPHER"):
        shake_hands(server, cbc_client)


def test_compression_and_renegotiation_are_off(server_identity: Issued) -> None:
    server = server_context(server_identity.certificate, server_identity.key)

    assert server.options & ssl.OP_NO_COMPRESSION
    assert server.options & ssl.OP_NO_RENEGOTIATION


def test_a_missing_certificate_file_is_named(tmp_path: Path, server_identity: Issued) -> None:
    missing = tmp_path / "nowhere.pem"

    with pytest.raises(TlsConfigurationError, match=f"certificate file {missing} cannot be read"):
        server_context(missing, server_identity.key)


def test_a_configuration_error_is_invalid_input(tmp_path: Path, server_identity: Issued) -> None:
    with pytest.raises(InvalidInput):
        server_context(server_identity.certificate, tmp_path / "nowhere.key")


def test_a_key_file_that_holds_no_key_is_named(server_identity: Issued) -> None:
    with pytest.raises(
        TlsConfigurationError,
        match=f"private key file {server_identity.certificate} holds no usable PEM private key",
    ):
        server_context(server_identity.certificate, server_identity.certificate)


def test_a_certificate_file_that_holds_no_certificate_is_named(server_identity: Issued) -> None:
    with pytest.raises(
        TlsConfigurationError,
        match=f"certificate file {server_identity.key} holds no usable PEM certificate",
    ):
        server_context(server_identity.key, server_identity.key)


def test_the_key_of_another_certificate_is_refused_naming_both_files(
    server_identity: Issued, client_identity: Issued
) -> None:
    with pytest.raises(TlsConfigurationError, match="does not belong to the certificate") as info:
        server_context(server_identity.certificate, client_identity.key)

    assert str(client_identity.key) in str(info.value)
    assert str(server_identity.certificate) in str(info.value)


def test_an_encrypted_key_is_refused_without_prompting_for_a_password(
    tmp_path: Path, server_identity: Issued
) -> None:
    key = serialization.load_pem_private_key(server_identity.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )

    with pytest.raises(TlsConfigurationError, match=f"{encrypted} is encrypted"):
        server_context(server_identity.certificate, encrypted)


def test_an_authority_file_without_certificates_is_named(server_identity: Issued) -> None:
    with pytest.raises(
        TlsConfigurationError,
        match=f"authority file {server_identity.key} holds no usable PEM certificate",
    ):
        server_context(server_identity.certificate, server_identity.key, server_identity.key)


def test_the_client_context_checks_the_server_against_the_authority(
    authority: Authority, stranger: Authority, server_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key)

    client_end, _ = shake_hands(server, client_context(authority.ca_file))
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        shake_hands(server, client_context(stranger.ca_file))

    assert client_end.version() in ("TLSv1.2", "TLSv1.3")


def test_the_client_context_presents_its_certificate_for_mutual_authentication(
    authority: Authority, server_identity: Issued, client_identity: Issued
) -> None:
    server = server_context(server_identity.certificate, server_identity.key, authority.ca_file)
    client = client_context(authority.ca_file, client_identity.certificate, client_identity.key)

    _, server_end = shake_hands(server, client)

    assert server_end.getpeercert()
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2


def test_the_client_context_needs_both_certificate_and_key(
    authority: Authority, client_identity: Issued
) -> None:
    with pytest.raises(TlsConfigurationError, match="both its certificate file and its key"):
        client_context(authority.ca_file, client_identity.certificate)
