"""A hospital information system listening for results: an MLLP server written from the
protocol (independent of pedipacs' own MLLP code) that keeps every message it receives and
acknowledges it with AA (or the code a test asks for), echoing MSH-10 in MSA-2."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        buffer = b""
        self.request.settimeout(30)
        while True:
            try:
                chunk = self.request.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while FS in buffer:
                framed, buffer = buffer.split(FS, 1)
                buffer = buffer.removeprefix(CR)
                message = framed.split(VT, 1)[-1].decode("utf-8")
                self.request.sendall(VT + self.server.answer(message).encode() + FS + CR)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    answer: Callable[[str], str]


class Hl7Listener:
    """`start()` listens on `port` (the same port again after `stop()`); `messages` in order."""

    def __init__(self, port: int, ack_code: str = "AA") -> None:
        self.port = port
        self.ack_code = ack_code
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Hl7Listener:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.answer = self._answer
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Hl7Listener:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _answer(self, message: str) -> str:
        with self._lock:
            self.messages.append(message)
        fields = message.split("\r", 1)[0].split("|")
        control_id = fields[9] if len(fields) > 9 else ""
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return (
            f"MSH|^~\\&|HIS|HOSPITAL|PEDIPACS||{now}||ACK^R01^ACK|A{control_id}|P|2.5.1\r"
            f"MSA|{self.ack_code}|{control_id}\r"
        )

    def wait_for(self, count: int, timeout: float = 30.0) -> list[str]:
        """The messages once `count` have arrived; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)  # polling for an outcome another process produces
        raise AssertionError(f"{len(self.messages)} message(s) arrived, {count} expected")


def segments(message: str, name: str) -> list[list[str]]:
    """The fields of every `name` segment of a message (field 0 is the segment name)."""
    return [s.split("|") for s in message.split("\r") if s.startswith(f"{name}|")]


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
