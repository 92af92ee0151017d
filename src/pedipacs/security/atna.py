"""The audit trail sent to an ATNA audit record repository as syslog (IHE ITI-20).

Each `audit_event` row becomes one DICOM audit message (PS3.15 A.5.1, the schema derived from
RFC 3881), carried in an RFC 5424 syslog message (MSGID `IHE+RFC-3881`, the XML after a UTF-8
BOM) and framed by octet counting (RFC 5425 over TLS, RFC 6587 over plain TCP).

Delivery is at least once, in sequence order, with no gap. A cursor row (`audit_export_cursor`,
name "atna") holds the last sequence number delivered. Records after it are sent in batches,
each over a fresh connection that is then closed both ways: the collector closing its side
after ours (TLS close_notify, or end of stream) shows it has read everything, and only then
does the cursor move. A collector that restarts in the middle may therefore see records twice,
never miss one. Every message carries the record's `sequence` and `record_hash` in its
structured data, so a collector can check continuity and spot duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, update
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pedipacs.config import Settings
from pedipacs.db.engine import Database
from pedipacs.db.tables import AuditExportCursor
from pedipacs.errors import PedipacsError, TlsConfigurationError
from pedipacs.security.audit import AUDIT_EVENT
from pedipacs.security.audit_message import (
    AuditSource,
    audit_message_xml,
    outcome_indicator,
    record_values,
    utc_timestamp,
)

log = logging.getLogger(__name__)

CURSOR_NAME = "atna"
APP_NAME = "pedipacs"
# What IHE ATNA (Record Audit Event, ITI-20) names messages in the RFC 3881-derived format.
MSGID = "IHE+RFC-3881"
FACILITY_AUTHPRIV = 10
SEVERITY_ERROR, SEVERITY_WARNING, SEVERITY_NOTICE = 3, 4, 5
BOM = b"\xef\xbb\xbf"
# RFC 5424 section 7.3.1: `meta sequenceId` runs 1..2147483647, then starts again at 1.
META_SEQUENCE_LIMIT = 2_147_483_647
# Private structured-data IDs are NAME@<IANA private enterprise number>. pedipacs has no
# number of its own yet; 32473 is the one RFC 5612 sets aside for documentation.
ENTERPRISE_NUMBER = 32473
SD_ID = f"{APP_NAME}@{ENTERPRISE_NUMBER}"
_SD_SPECIAL = re.compile(r'["\\\]]')


class CollectorUnavailableError(PedipacsError):
    """The ATNA collector could not be reached, refused the connection or its certificate, or
    did not confirm it had read what was sent. Nothing was marked as delivered."""


# -- the syslog message (RFC 5424) and its framing (RFC 5425, RFC 6587) -----------------------


def severity(outcome: int) -> int:
    """Syslog severity of an audit outcome: success is a notice, a minor failure a warning,
    a serious or major failure an error.

    >>> [severity(outcome) for outcome in (0, 4, 8, 12)]
    [5, 4, 3, 3]
    """
    if outcome == 0:
        return SEVERITY_NOTICE
    if outcome == 4:
        return SEVERITY_WARNING
    return SEVERITY_ERROR


def priority(outcome: int) -> int:
    """PRI: facility authpriv (10) times 8 plus the severity.

    >>> priority(0), priority(4), priority(12)
    (85, 84, 83)
    """
    return FACILITY_AUTHPRIV * 8 + severity(outcome)


def syslog_message(
    row: Mapping[str, Any] | Row[Any],
    source: AuditSource | None = None,
    *,
    procid: int | None = None,
) -> bytes:
    """`<PRI>1 TIMESTAMP HOSTNAME pedipacs PROCID IHE+RFC-3881 [SD] BOM<AuditMessage ...>`."""
    values = record_values(row)
    source = source or AuditSource.local()
    sequence = int(values["sequence"])
    structured_data = _sd_element(
        "meta", [("sequenceId", str((sequence - 1) % META_SEQUENCE_LIMIT + 1))]
    ) + _sd_element(
        SD_ID, [("sequence", str(sequence)), ("recordHash", str(values["record_hash"]))]
    )
    header = " ".join(
        (
            f"<{priority(outcome_indicator(values.get('outcome')))}>1",
            utc_timestamp(values["at"]),
            _header_field(source.host_name, 255),
            APP_NAME,
            _header_field(str(os.getpid() if procid is None else procid), 128),
            MSGID,
            structured_data,
        )
    )
    return header.encode("ascii") + b" " + BOM + audit_message_xml(values, source)


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 / RFC 6587 octet-counting frame: the length in octets, a space, the message.

    >>> octet_counted("<85>1 é".encode())
    b'8 <85>1 \\xc3\\xa9'
    """
    return b"%d %s" % (len(message), message)


def _sd_element(sd_id: str, params: Sequence[tuple[str, str]]) -> str:
    """One SD-ELEMENT; `"`, `\\` and `]` in values are escaped with a backslash.

    >>> _sd_element("x@32473", [("a", 'say "hi" [1]')])
    '[x@32473 a="say \\\\"hi\\\\" [1\\\\]"]'
    """
    rendered = "".join(f' {name}="{_sd_escape(value)}"' for name, value in params)
    return f"[{sd_id}{rendered}]"


def _sd_escape(value: str) -> str:
    return _SD_SPECIAL.sub(lambda match: "\\" + match.group(0), value)


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` long, `-` if empty."""
    kept = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return kept or "-"


# -- the exporter --------------------------------------------------------------------------


class AtnaExporter:
    """Sends the audit records after the cursor to one collector, batch by batch.

    With several nodes on one PostgreSQL database, the cursor row is locked while a batch is
    sent (`FOR UPDATE SKIP LOCKED`), so one node at a time exports and the others skip their
    turn. On SQLite (one node) the cursor is read, the batch sent, then the cursor moved.
    """

    def __init__(
        self,
        database: Database,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        source: AuditSource | None = None,
        cursor_name: str = CURSOR_NAME,
        timeout: float = 10.0,
        max_backoff: float = 60.0,
    ) -> None:
        self._database = database
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._source = source or AuditSource.local()
        self._cursor_name = cursor_name
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._cursor_exists = False

    @property
    def collector(self) -> str:
        scheme = "tls" if self._ssl_context is not None else "tcp"
        return f"{scheme}://{self._host}:{self._port}"

    def export_pending(self, batch: int = 500) -> int:
        """Send every record after the cursor, oldest first; return how many were sent.

        Raises CollectorUnavailableError when a batch could not be delivered; the cursor then
        stays after the last batch that was.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._ensure_cursor()
        sent = 0
        while True:
            count = self._export_batch(batch)
            sent += count
            if count < batch:
                return sent

    def run(self, stop: threading.Event, interval: float = 5.0) -> None:
        """Export every `interval` seconds until `stop` is set; the thread's body.

        While the collector is down, attempts back off (doubling, at most `max_backoff`
        seconds apart). An outage is logged when it starts and when it ends, not per attempt.
        """
        failures = 0
        while not stop.is_set():
            try:
                sent = self.export_pending()
            except CollectorUnavailableError as error:
                failures += 1
                if failures == 1:
                    log.warning(
                        "ATNA collector %s unavailable (%s); audit records are kept and sent "
                        "when it is back",
                        self.collector,
                        error.__cause__ or error,
                    )
                else:
                    log.debug("ATNA collector still unavailable: %s", error)
            except Exception:
                failures += 1
                if failures == 1:
                    log.exception("ATNA export failed; retrying")
            else:
                if failures:
                    log.info(
                        "ATNA export to %s resumed after %d failed attempts; %d records sent",
                        self.collector,
                        failures,
                        sent,
                    )
                failures = 0
            stop.wait(self._delay(failures, interval))

    def _delay(self, failures: int, interval: float) -> float:
        if failures == 0:
            return interval
        return float(min(interval * 2 ** min(failures - 1, 16), max(self._max_backoff, interval)))

    # -- one batch --

    def _export_batch(self, batch: int) -> int:
        if self._database.is_sqlite:
            with self._database.reading() as session:
                after = self._position(session, lock=False)
                rows = _rows_after(session, after or 0, batch)
            if rows:
                self._deliver(after or 0, rows)
                with self._database.unit_of_work() as session:
                    self._advance(session, rows[-1].sequence)
            return len(rows)
        with self._database.unit_of_work() as session:
            after = self._position(session, lock=True)
            if after is None:  # another node is exporting right now
                return 0
            rows = _rows_after(session, after, batch)
            if rows:
                self._deliver(after, rows)
                self._advance(session, rows[-1].sequence)
            return len(rows)

    def _ensure_cursor(self) -> None:
        if self._cursor_exists:
            return
        try:
            with self._database.unit_of_work() as session:
                if session.get(AuditExportCursor, self._cursor_name) is None:
                    session.add(AuditExportCursor(name=self._cursor_name, sequence=0))
        except IntegrityError:
            pass  # another node created it at the same moment
        self._cursor_exists = True

    def _position(self, session: Session, *, lock: bool) -> int | None:
        query = sql_select(AuditExportCursor.sequence).where(
            AuditExportCursor.name == self._cursor_name
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        position = session.execute(query).scalar_one_or_none()
        return None if position is None else int(position)

    def _advance(self, session: Session, sequence: int) -> None:
        # Never backwards: a slower exporter finishing late must not undo a faster one.
        session.execute(
            update(AuditExportCursor)
            .where(
                AuditExportCursor.name == self._cursor_name,
                AuditExportCursor.sequence < sequence,
            )
            .values(sequence=sequence, updated_at=datetime.now(UTC))
        )

    def _deliver(self, after: int, rows: Sequence[Row[Any]]) -> None:
        expected = after + 1
        for row in rows:
            if row.sequence != expected:
                log.warning(
                    "audit records %d to %d are missing from the trail; sending what is there",
                    expected,
                    row.sequence - 1,
                )
            expected = row.sequence + 1
        procid = os.getpid()
        payload = b"".join(
            octet_counted(syslog_message(row, self._source, procid=procid)) for row in rows
        )
        try:
            connection = self._connect()
            try:
                _refuse_if_closed(connection)
                connection.sendall(payload)
                _close_confirmed(connection)
            finally:
                connection.close()
        except OSError as error:  # includes ssl.SSLError and timeouts
            raise CollectorUnavailableError(f"{self.collector}: {error}") from error

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((self._host, self._port), timeout=self._timeout)
        if self._ssl_context is None:
            return raw
        try:
            return self._ssl_context.wrap_socket(raw, server_hostname=self._host)
        except BaseException:
            raw.close()
            raise


def _rows_after(session: Session, after: int, batch: int) -> list[Row[Any]]:
    return list(
        session.execute(
            sql_select(AUDIT_EVENT)
            .where(AUDIT_EVENT.c.sequence > after)
            .order_by(AUDIT_EVENT.c.sequence)
            .limit(batch)
        )
    )


def _refuse_if_closed(connection: socket.socket) -> None:
    """Fail before writing when the collector has already closed or refused us.

    A syslog collector never writes, so anything to read is an end of stream, a reset or a TLS
    alert (a TLS 1.3 collector refusing our certificate says so after the handshake), except
    TLS 1.3 session tickets, which a non-blocking read consumes without returning data.
    """
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return
    timeout = connection.gettimeout()
    connection.setblocking(False)
    try:
        data = connection.recv(1)
    except ssl.SSLWantReadError:
        return  # only session tickets
    finally:
        connection.settimeout(timeout)
    if not data:
        raise ConnectionResetError("the collector closed the connection before anything was sent")


def _close_confirmed(connection: socket.socket) -> None:
    """Close our side and wait for the collector to close its own, which it does only after
    reading everything before our end of stream. A reset, a TLS alert or a timeout raises."""
    if isinstance(connection, ssl.SSLSocket):
        # unwrap sends close_notify and waits for the collector's. A collector that closes
        # without one has still read up to ours (unread data would have reset the connection).
        with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError):
            connection.unwrap()
        return
    connection.shutdown(socket.SHUT_WR)
    while connection.recv(4096):
        pass  # a syslog collector has nothing to say; read until it closes


# -- building from settings, running in the background ---------------------------------------


def collector_ssl_context(
    ca_file: Path | None,
    certificate_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """TLS 1.2 or later; the collector's certificate checked against `ca_file` (or the system
    store) and its name against the configured host; the node's certificate presented when
    one is configured (RFC 5425 mutual authentication)."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None
        )
    except (OSError, ssl.SSLError) as error:
        raise TlsConfigurationError(f"ATNA collector authorities {ca_file}: {error}") from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate_file is not None and key_file is not None:
        try:
            context.load_cert_chain(certificate_file, key_file)
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigurationError(
                f"node certificate {certificate_file} / key {key_file}: {error}"
            ) from error
    return context


def exporter_from_settings(settings: Settings, database: Database) -> AtnaExporter | None:
    """The exporter the settings describe, or None when no collector is configured."""
    if not settings.audit_syslog_host:
        return None
    context = (
        collector_ssl_context(
            settings.audit_syslog_ca_file, settings.tls_certificate_file, settings.tls_key_file
        )
        if settings.audit_syslog_tls
        else None
    )
    return AtnaExporter(
        database,
        settings.audit_syslog_host,
        settings.audit_syslog_port,
        context,
        source=AuditSource.local(settings.ae_title),
    )


def run_in_background(
    exporter: AtnaExporter, interval: float = 5.0
) -> tuple[threading.Thread, threading.Event]:
    """Start `exporter.run` in a daemon thread; set the event and join the thread to stop."""
    stop = threading.Event()
    thread = threading.Thread(
        target=exporter.run, args=(stop, interval), name="atna-export", daemon=True
    )
    thread.start()
    return thread, stop
