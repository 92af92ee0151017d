"""The audit trail exported to a real syslog collector (TLS and plain TCP) on 127.0.0.1: every
record once, in order, after the collector comes back; nothing to a collector not trusted."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from pedipacs.config import Settings
from pedipacs.db.engine import Database
from pedipacs.db.migrate import upgrade
from pedipacs.db.tables import AuditExportCursor
from pedipacs.model.origin import Origin
from pedipacs.security.atna import (
    CURSOR_NAME,
    AtnaExporter,
    CollectorUnavailableError,
    collector_ssl_context,
    exporter_from_settings,
    run_in_background,
)
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record
from support.certificates import TestAuthority as Authority  # "Test*" would be collected
from support.syslog import SyslogCollector, SyslogMessage

TIMEOUT = 5.0
ORIGINS = [
    Origin.dimse("CTWS", "PEDIPACS", "10.1.2.3"),
    Origin.http("dr.lee", "192.0.2.7"),
    Origin.cli("admin"),
]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    opened = Database(database_url)
    yield opened
    opened.dispose()


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "ca")


def collector_context(authority: Authority, *, client_ca: Path | None = None) -> ssl.SSLContext:
    issued = authority.issue("collector")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.certificate, issued.key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def write_records(database: Database, count: int) -> None:
    for number in range(count):
        with database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    AuditEventId.INSTANCES_TRANSFERRED if number % 2 else AuditEventId.QUERY,
                    "R" if number % 2 else "E",
                    ORIGINS[number % len(ORIGINS)],
                    outcome=AuditOutcome.MINOR_FAILURE if number % 3 == 2 else AuditOutcome.SUCCESS,
                    patient_id=f"P{number}",
                    study_instance_uid=f"1.2.826.0.1.3680043.10.1{number}",
                    detail=f"record <{number}> & more",
                ),
            )


def cursor(database: Database) -> int:
    with database.reading() as session:
        position = session.execute(
            select(AuditExportCursor.sequence).where(AuditExportCursor.name == CURSOR_NAME)
        ).scalar_one_or_none()
    return int(position or 0)


def sequences(messages: list[SyslogMessage]) -> list[int]:
    return [int(message.structured_data["meta"]["sequenceId"]) for message in messages]


def exporter_to(
    database: Database, collector: SyslogCollector, context: ssl.SSLContext | None
) -> AtnaExporter:
    return AtnaExporter(database, "127.0.0.1", collector.port, context, timeout=TIMEOUT)


def test_every_record_arrives_once_in_order_with_its_sequence(
    database: Database, authority: Authority
) -> None:
    write_records(database, 7)
    with SyslogCollector(collector_context(authority)) as collector:
        exporter = exporter_to(database, collector, collector_ssl_context(authority.ca_file))

        assert exporter.export_pending(batch=3) == 7
        assert exporter.export_pending(batch=3) == 0

        messages = collector.messages
    assert sequences(messages) == [1, 2, 3, 4, 5, 6, 7]
    assert cursor(database) == 7
    for number, message in enumerate(messages):
        assert message.msgid == "IHE+RFC-3881"
        assert message.app_name == "pedipacs"
        assert message.priority == (84 if number % 3 == 2 else 85)
        assert message.structured_data["pedipacs@32473"]["sequence"] == str(number + 1)
        assert len(message.structured_data["pedipacs@32473"]["recordHash"]) == 64
        assert message.msg.startswith(b"\xef\xbb\xbf<?xml")
        xml = ElementTree.fromstring(message.msg[3:])
        event_id = xml.find("EventIdentification/EventID")
        assert event_id is not None
        assert event_id.get("csd-code") == ("110104" if number % 2 else "110112")
        patient = xml.find("ParticipantObjectIdentification")
        assert patient is not None
        assert patient.get("ParticipantObjectID") == f"P{number}"
        description = xml.findtext("EventIdentification/EventOutcomeDescription")
        assert description == f"record <{number}> & more"


def test_a_stopped_collector_keeps_the_cursor_and_the_next_one_gets_the_rest_without_gap(
    database: Database, authority: Authority
) -> None:
    context = collector_context(authority)
    write_records(database, 3)
    first = SyslogCollector(context).start()
    exporter = exporter_to(database, first, collector_ssl_context(authority.ca_file))
    assert exporter.export_pending() == 3
    first.stop()

    write_records(database, 4)
    with pytest.raises(CollectorUnavailableError):
        exporter.export_pending()
    assert cursor(database) == 3

    with SyslogCollector(context, port=first.port) as restarted:
        assert exporter.export_pending() == 4
        second_messages = restarted.messages
    assert sequences(first.messages) == [1, 2, 3]
    assert sequences(second_messages) == [4, 5, 6, 7]
    assert cursor(database) == 7


def test_a_collector_dying_during_delivery_does_not_move_the_cursor(
    database: Database, authority: Authority
) -> None:
    context = collector_context(authority)
    write_records(database, 5)
    crashing = SyslogCollector(context, crash_on_data=True).start()
    exporter = exporter_to(database, crashing, collector_ssl_context(authority.ca_file))
    with pytest.raises(CollectorUnavailableError):
        exporter.export_pending()
    crashing.stop()
    assert crashing.connections == 1
    assert cursor(database) == 0

    with SyslogCollector(context, port=crashing.port) as restarted:
        assert exporter.export_pending() == 5
        assert sequences(restarted.messages) == [1, 2, 3, 4, 5]


def test_a_collector_whose_certificate_is_not_trusted_gets_nothing(
    database: Database, tmp_path: Path
) -> None:
    trusted = Authority.create(tmp_path / "trusted", name="hospital CA")
    stranger = Authority.create(tmp_path / "stranger", name="someone else's CA")
    write_records(database, 2)
    with SyslogCollector(collector_context(stranger)) as collector:
        exporter = exporter_to(database, collector, collector_ssl_context(trusted.ca_file))
        with pytest.raises(CollectorUnavailableError, match="certificate verify failed"):
            exporter.export_pending()
        assert collector.wait_for(connections=1, timeout=TIMEOUT)
    assert collector.messages == []
    assert collector.refused  # the handshake failed on the collector's side too
    assert cursor(database) == 0


def test_plain_tcp_delivers_octet_counted_messages(database: Database) -> None:
    write_records(database, 4)
    with SyslogCollector() as collector:
        exporter = exporter_to(database, collector, None)
        assert exporter.export_pending(batch=2) == 4
        assert sequences(collector.messages) == [1, 2, 3, 4]
    assert cursor(database) == 4


def test_the_exporter_from_settings_presents_the_node_certificate(
    database: Database, authority: Authority, tmp_path: Path
) -> None:
    node = authority.issue("pedipacs-node", server=False)
    write_records(database, 2)
    with SyslogCollector(collector_context(authority, client_ca=authority.ca_file)) as collector:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database.url,
            ae_title="PEDIPACS_TEST",
            audit_syslog_host="127.0.0.1",
            audit_syslog_port=collector.port,
            audit_syslog_ca_file=authority.ca_file,
            tls_certificate_file=node.certificate,
            tls_key_file=node.key,
        )
        exporter = exporter_from_settings(settings, database)
        assert exporter is not None
        assert exporter.export_pending() == 2
        messages = collector.messages
    assert [message.client_name for message in messages] == ["pedipacs-node"] * 2
    xml = ElementTree.fromstring(messages[0].msg[3:])
    source = xml.find("AuditSourceIdentification")
    assert source is not None
    assert source.get("AuditSourceID") == "PEDIPACS_TEST"


def test_while_another_node_sends_a_batch_this_one_skips_its_turn(
    database: Database, authority: Authority
) -> None:
    if database.is_sqlite:
        pytest.skip("one node per SQLite database: nothing to share")
    write_records(database, 2)
    with SyslogCollector(collector_context(authority)) as collector:
        exporter = exporter_to(database, collector, collector_ssl_context(authority.ca_file))
        assert exporter.export_pending() == 2
        write_records(database, 2)
        with database.unit_of_work() as other_node:
            other_node.execute(
                select(AuditExportCursor.sequence)
                .where(AuditExportCursor.name == CURSOR_NAME)
                .with_for_update()
            )
            assert exporter.export_pending() == 0
        assert exporter.export_pending() == 2
        assert sequences(collector.messages) == [1, 2, 3, 4]


def test_no_collector_configured_means_no_exporter(database: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database.url)
    assert exporter_from_settings(settings, database) is None


def test_the_background_thread_logs_an_outage_once_and_catches_up_when_it_ends(
    database: Database, authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    context = collector_context(authority)
    write_records(database, 3)
    down = SyslogCollector(context, crash_on_data=True).start()
    exporter = AtnaExporter(
        database,
        "127.0.0.1",
        down.port,
        collector_ssl_context(authority.ca_file),
        timeout=TIMEOUT,
        max_backoff=0.2,
    )
    caplog.set_level(logging.INFO, logger="pedipacs.security.atna")
    thread, stop = run_in_background(exporter, interval=0.02)
    up: SyslogCollector | None = None
    try:
        assert down.wait_for(connections=3, timeout=TIMEOUT)
        down.stop()
        up = SyslogCollector(context, port=down.port).start()
        assert up.wait_for(messages=3, timeout=TIMEOUT)
        write_records(database, 2)
        assert up.wait_for(messages=5, timeout=TIMEOUT)
    finally:
        stop.set()
        thread.join(TIMEOUT)
        if up is not None:
            up.stop()
    assert not thread.is_alive()
    assert sequences(up.messages) == [1, 2, 3, 4, 5]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].getMessage()
    assert any("resumed" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_pedipacs_serve_sends_its_audit_records_to_the_configured_collector(
    tmp_path: Path, database_url: str, dcmtk: None
) -> None:
    from support.server import start_server

    with SyslogCollector() as collector:
        server = start_server(
            tmp_path / "server",
            database_url,
            extra_env={
                "PEDIPACS_AUDIT_SYSLOG_HOST": "127.0.0.1",
                "PEDIPACS_AUDIT_SYSLOG_PORT": str(collector.port),
                "PEDIPACS_AUDIT_SYSLOG_TLS": "false",
            },
        )
        try:
            assert server.get(f"{server.http_url}/dicomweb/studies").status_code == 200
            # The query is the latest record; the export runs every few seconds.
            arrived = collector.wait_for(messages=1, timeout=30)
            deadline = 30.0
            while arrived and b"110112" not in b"".join(m.msg for m in collector.messages):
                arrived = collector.wait_for(messages=len(collector.messages) + 1, timeout=5)
                deadline -= 5
                if deadline <= 0:
                    break
        finally:
            server.stop()
    received = b"".join(m.msg for m in collector.messages)
    assert b'csd-code="110113"' in received  # the test account and its token, created
    assert b'csd-code="110112"' in received  # the QIDO query
