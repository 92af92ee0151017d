"""TLS contexts for pedipacs' listeners and its own outbound connections.

The profile follows BCP 195 (RFC 9325), as the DICOM TLS profiles of PS3.15 Annex B do:
TLS 1.2 at least and TLS 1.3 when the peer has it; in TLS 1.2 only forward-secret (ECDHE)
AEAD cipher suites; no TLS compression; no renegotiation. TLS 1.3 suites are OpenSSL's, all
of them AEAD.

Configuration mistakes are caught when the context is built and reported naming the file,
so a node does not start with a listener that refuses every peer.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pedipacs.errors import TlsConfigurationError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# RFC 9325 section 4.2 (recommended suites) with the ECDSA twins and ChaCha20-Poly1305:
# ephemeral elliptic-curve key exchange and authenticated encryption only. OpenSSL names.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


class _EncryptedKey(Exception):
    """Raised by the password callback: pedipacs is never asked for a key's password."""


def server_context(
    certificate_file: Path, key_file: Path, ca_file: Path | None = None
) -> ssl.SSLContext:
    """A listener's context. With `ca_file`, every client must present a certificate that one
    of those authorities signed (mutual authentication); without it none is asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_profile(context)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_identity(context, certificate_file, key_file)
    if ca_file is not None:
        _load_authorities(context, ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(
    ca_file: Path | None,
    certificate_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """A context for connections pedipacs opens: the server's certificate and host name are
    checked against `ca_file` (the system's authorities when None); `certificate_file` and
    `key_file` are presented when the server asks for a client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    _apply_profile(context)
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_authorities(context, ca_file)
    if (certificate_file is None) != (key_file is None):
        raise TlsConfigurationError(
            "a TLS client certificate needs both its certificate file and its key file"
        )
    if certificate_file is not None and key_file is not None:
        _load_identity(context, certificate_file, key_file)
    return context


def _apply_profile(context: ssl.SSLContext) -> None:
    context.minimum_version = MINIMUM_VERSION
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def _load_identity(context: ssl.SSLContext, certificate_file: Path, key_file: Path) -> None:
    _check_readable(certificate_file, "certificate")
    _check_readable(key_file, "private key")
    _check_certificates(certificate_file, "certificate")
    try:
        context.load_cert_chain(certificate_file, key_file, password=_refuse_password)
    except _EncryptedKey:
        raise TlsConfigurationError(
            f"TLS private key file {key_file} is encrypted: give pedipacs an unencrypted key "
            "and protect it with file permissions"
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigurationError(
                f"TLS private key file {key_file} does not belong to the certificate in "
                f"{certificate_file}"
            ) from error
        raise TlsConfigurationError(
            f"TLS private key file {key_file} holds no usable PEM private key{_reason(error)}"
        ) from error


def _load_authorities(context: ssl.SSLContext, ca_file: Path) -> None:
    _check_readable(ca_file, "authority")
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as error:
        raise TlsConfigurationError(
            f"TLS authority file {ca_file} holds no usable PEM certificate{_reason(error)}"
        ) from error


def _check_readable(path: Path, what: str) -> None:
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as error:
        raise TlsConfigurationError(
            f"TLS {what} file {path} cannot be read: {error.strerror or error}"
        ) from error


def _check_certificates(path: Path, what: str) -> None:
    """load_cert_chain's errors do not say which of its two files is wrong: read the
    certificates alone first."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except ssl.SSLError as error:
        raise TlsConfigurationError(
            f"TLS {what} file {path} holds no usable PEM certificate{_reason(error)}"
        ) from error


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal and hang a server's start.
    raise _EncryptedKey


def _reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason code, when it gave one, as words: ' (no certificate or crl found)'."""
    return f" ({error.reason.replace('_', ' ').lower()})" if error.reason else ""
