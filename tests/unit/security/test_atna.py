"""ATNA syslog: the RFC 5424 message around the audit XML, its priority, its octet framing,
and the TLS client context."""

from __future__ import annotations

import ssl
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from pedipacs.errors import TlsConfigurationError
from pedipacs.security.atna import (
    BOM,
    collector_ssl_context,
    octet_counted,
    priority,
    syslog_message,
)
from pedipacs.security.audit import AuditOutcome
from pedipacs.security.audit_message import AuditSource, audit_message_xml
from support.certificates import TestAuthority as Authority  # "Test*" would be collected
from support.syslog import parse_syslog, split_frames

SOURCE = AuditSource("PEDIPACS", "pacs01.hospital.example")


def audit_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sequence": 7,
        "record_hash": "0f" * 32,
        "at": datetime(2026, 11, 25, 9, 30, 1, 250000),
        "event_id": "110112",
        "event_name": "Query",
        "event_action": "E",
        "outcome": 0,
        "door": "HTTP",
        "user": "dr.lee",
        "remote_host": "192.0.2.7",
        "remote_ae": None,
        "patient_id": "P-0042",
        "study_instance_uid": None,
        "detail": "PatientID=P-0042",
    }
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (AuditOutcome.SUCCESS, 85),  # authpriv.notice
        (AuditOutcome.MINOR_FAILURE, 84),  # authpriv.warning
        (AuditOutcome.SERIOUS_FAILURE, 83),  # authpriv.err
        (AuditOutcome.MAJOR_FAILURE, 83),
    ],
)
def test_priority_is_authpriv_with_a_severity_from_the_outcome(
    outcome: AuditOutcome, expected: int
) -> None:
    assert priority(int(outcome)) == expected
    message = parse_syslog(syslog_message(audit_row(outcome=int(outcome)), SOURCE))
    assert message.priority == expected


def test_the_header_names_version_time_host_app_process_and_the_ihe_msgid() -> None:
    raw = syslog_message(audit_row(), SOURCE, procid=4242)

    assert raw.startswith(
        b"<85>1 2026-11-25T09:30:01.250000Z pacs01.hospital.example pedipacs 4242 IHE+RFC-3881 ["
    )
    message = parse_syslog(raw)
    assert (message.version, message.app_name, message.procid, message.msgid) == (
        1,
        "pedipacs",
        "4242",
        "IHE+RFC-3881",
    )


def test_structured_data_carries_the_records_sequence_and_hash() -> None:
    message = parse_syslog(syslog_message(audit_row(), SOURCE))

    assert message.structured_data == {
        "meta": {"sequenceId": "7"},
        "pedipacs@32473": {"sequence": "7", "recordHash": "0f" * 32},
    }


def test_the_meta_sequence_id_starts_again_at_one_after_its_limit() -> None:
    message = parse_syslog(syslog_message(audit_row(sequence=2_147_483_648), SOURCE))

    assert message.structured_data["meta"]["sequenceId"] == "1"
    assert message.structured_data["pedipacs@32473"]["sequence"] == "2147483648"


def test_the_message_is_a_bom_and_the_audit_xml() -> None:
    message = parse_syslog(syslog_message(audit_row(), SOURCE))

    assert message.msg == BOM + audit_message_xml(audit_row(), SOURCE)
    root = ElementTree.fromstring(message.msg[len(BOM) :])
    assert root.find("EventIdentification/EventID") is not None


def test_a_host_name_with_spaces_or_non_ascii_is_reduced_to_printable_ascii() -> None:
    message = parse_syslog(syslog_message(audit_row(), AuditSource("PEDIPACS", "pacs é 01")))

    assert message.hostname == "pacs01"


def test_an_empty_host_name_is_the_nil_value() -> None:
    assert parse_syslog(syslog_message(audit_row(), AuditSource("PEDIPACS", ""))).hostname == "-"


def test_octet_counting_gives_the_length_in_bytes_and_frames_split_back() -> None:
    messages = [syslog_message(audit_row(sequence=n, detail="é" * n), SOURCE) for n in (1, 2, 3)]
    stream = b"".join(octet_counted(message) for message in messages)

    length, _, rest = octet_counted(messages[0]).partition(b" ")
    assert int(length) == len(messages[0]) == len(rest)
    frames, leftover = split_frames(stream)
    assert frames == messages
    assert leftover == b""
    # A frame cut in the middle waits for the rest.
    frames, leftover = split_frames(stream[:-5])
    assert frames == messages[:2]
    assert leftover == octet_counted(messages[2])[:-5]


def test_the_client_context_verifies_the_collector_with_tls_12_or_later(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path / "ca")
    context = collector_ssl_context(authority.ca_file)

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1


def test_the_client_context_loads_the_node_certificate(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path / "ca")
    node = authority.issue("node", server=False)

    collector_ssl_context(authority.ca_file, node.certificate, node.key)  # does not raise


@pytest.mark.parametrize("broken", ["ca", "key"])
def test_a_missing_or_mismatched_file_is_a_tls_configuration_error(
    tmp_path: Path, broken: str
) -> None:
    authority = Authority.create(tmp_path / "ca")
    node = authority.issue("node", server=False)
    other = authority.issue("other", server=False)
    with pytest.raises(TlsConfigurationError):
        if broken == "ca":
            collector_ssl_context(tmp_path / "missing.pem")
        else:
            collector_ssl_context(authority.ca_file, node.certificate, other.key)
