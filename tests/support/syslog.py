"""A syslog collector for tests: octet-counted frames (RFC 5425 over TLS, RFC 6587 over plain
TCP) on 127.0.0.1, each message parsed as RFC 5424. It stands in for an ATNA audit record
repository."""

from __future__ import annotations

import re
import select
import socket
import socketserver
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any

READ_TIMEOUT = 5.0
_HEADER = re.compile(rb"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")


@dataclass(frozen=True)
class SyslogMessage:
    priority: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: dict[str, dict[str, str]]
    msg: bytes
    # The common name of the client certificate the sender presented, if any.
    client_name: str | None = None


def parse_syslog(message: bytes, client_name: str | None = None) -> SyslogMessage:
    """Split an RFC 5424 message into its header fields, structured data and MSG."""
    header = _HEADER.match(message)
    if header is None:
        raise ValueError(f"not an RFC 5424 header: {message[:80]!r}")
    fields = [part.decode("ascii") for part in header.groups()]
    structured_data, rest = _structured_data(message[header.end() :])
    if rest.startswith(b" "):
        rest = rest[1:]
    return SyslogMessage(
        int(fields[0]), int(fields[1]), *fields[2:], structured_data, rest, client_name
    )


def _structured_data(text: bytes) -> tuple[dict[str, dict[str, str]], bytes]:
    if text.startswith(b"-"):
        return {}, text[1:]
    elements: dict[str, dict[str, str]] = {}
    position = 0
    while position < len(text) and text[position : position + 1] == b"[":
        end_of_id = re.compile(rb"[ \]]").search(text, position)
        assert end_of_id is not None, "unterminated SD-ELEMENT"
        params: dict[str, str] = {}
        elements[text[position + 1 : end_of_id.start()].decode("ascii")] = params
        position = end_of_id.start()
        while text[position : position + 1] == b" ":
            equals = text.index(b'="', position)
            name = text[position + 1 : equals].decode("ascii")
            value, position = _param_value(text, equals + 2)
            params[name] = value
        assert text[position : position + 1] == b"]", "SD-ELEMENT not closed"
        position += 1
    return elements, text[position:]


def _param_value(text: bytes, position: int) -> tuple[str, int]:
    """The value starting at `position` (after the opening quote), and where it ends."""
    value = bytearray()
    while text[position : position + 1] != b'"':
        if text[position : position + 1] == b"\\" and text[position + 1 : position + 2] in (
            b'"',
            b"\\",
            b"]",
        ):
            position += 1
        value += text[position : position + 1]
        position += 1
    return value.decode("utf-8"), position + 1


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete octet-counted frames at the start of `data`, and what is left over."""
    frames = []
    while True:
        space = data.find(b" ")
        if space < 0:
            return frames, data
        length = int(data[:space])
        end = space + 1 + length
        if len(data) < end:
            return frames, data
        frames.append(data[space + 1 : end])
        data = data[end:]


class SyslogCollector:
    """A threaded collector on 127.0.0.1. Restart it on the same port by building another with
    `port=old.port`. With `crash_on_data`, it accepts (and completes the TLS handshake), then
    resets each connection as soon as data arrives, without reading it: a collector dying
    in the middle of a delivery."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        port: int = 0,
        crash_on_data: bool = False,
    ) -> None:
        self.ssl_context = ssl_context
        self.crash_on_data = crash_on_data
        self._condition = threading.Condition()
        self._messages: list[SyslogMessage] = []
        self._connections = 0
        self._refused: list[str] = []
        self._server = _Server(("127.0.0.1", port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def messages(self) -> list[SyslogMessage]:
        with self._condition:
            return list(self._messages)

    @property
    def connections(self) -> int:
        with self._condition:
            return self._connections

    @property
    def refused(self) -> list[str]:
        """Why connections failed before any message (TLS handshake errors, ...)."""
        with self._condition:
            return list(self._refused)

    def start(self) -> SyslogCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()  # joins the connection threads
        self._thread.join(READ_TIMEOUT)

    def __enter__(self) -> SyslogCollector:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_for(self, *, messages: int = 0, connections: int = 0, timeout: float = 10.0) -> bool:
        with self._condition:
            return self._condition.wait_for(
                lambda: len(self._messages) >= messages and self._connections >= connections,
                timeout,
            )

    # -- called from the connection threads --

    def _accepted(self) -> None:
        with self._condition:
            self._connections += 1
            self._condition.notify_all()

    def _received(self, message: SyslogMessage) -> None:
        with self._condition:
            self._messages.append(message)
            self._condition.notify_all()

    def _note_refused(self, reason: str) -> None:
        with self._condition:
            self._refused.append(reason)
            self._condition.notify_all()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # joined by server_close; every read has a timeout
    block_on_close = True

    def __init__(self, address: tuple[str, int], collector: SyslogCollector) -> None:
        self.collector = collector
        super().__init__(address, _Connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.collector._note_refused(f"unexpected error from {client_address}")


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        collector = self.server.collector
        raw: socket.socket = self.request
        raw.settimeout(READ_TIMEOUT)
        collector._accepted()
        connection: socket.socket = raw
        if collector.ssl_context is not None:
            try:
                connection = collector.ssl_context.wrap_socket(raw, server_side=True)
            except OSError as error:
                collector._note_refused(f"TLS handshake: {error}")
                return
        try:
            if collector.crash_on_data:
                self._reset_when_data_arrives(connection)
            else:
                self._read_frames(connection, collector)
        except OSError as error:
            collector._note_refused(f"connection: {error}")
        finally:
            connection.close()

    def _read_frames(self, connection: socket.socket, collector: SyslogCollector) -> None:
        client_name = _client_name(connection)
        pending = b""
        while chunk := connection.recv(65536):
            frames, pending = split_frames(pending + chunk)
            for frame in frames:
                collector._received(parse_syslog(frame, client_name))
        if isinstance(connection, ssl.SSLSocket):
            connection.unwrap()  # answer the sender's close_notify

    @staticmethod
    def _reset_when_data_arrives(connection: socket.socket) -> None:
        select.select([connection], [], [], READ_TIMEOUT)
        # Close with unread data and no linger: the kernel answers with a reset.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _client_name(connection: socket.socket) -> str | None:
    if not isinstance(connection, ssl.SSLSocket):
        return None
    certificate = connection.getpeercert()
    if not certificate:
        return None
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
