"""The listening socket's side of pynetdicom, with the limits a PACS on a hospital network needs.

pynetdicom reads whatever PDU length a peer declares into memory, 4 KiB per system call. Here a
PDU longer than we negotiated drops the connection before anything is buffered, and PDUs are
read straight into one buffer. On the TLS listener the handshake runs in the association's own
thread, within the network timeout.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from typing import Any

from pynetdicom import association as pynetdicom_association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler

log = logging.getLogger(__name__)

# The A-ASSOCIATE-RQ is not bound by the negotiated maximum and may list 128 contexts.
MIN_PDU_LIMIT = 1024 * 1024
PDU_HEADER_LENGTH = 6


class BoundedAssociationSocket(AssociationSocket):
    """An AssociationSocket that refuses PDUs longer than `_max_read` bytes, and a message
    (all bytes received since pedipacs last answered) longer than `_max_message` bytes.

    pynetdicom assembles a whole C-STORE data set in memory before any handler sees it, so
    the object size limit has to be enforced here, while the bytes arrive.
    """

    _max_read: int
    _max_message: int
    _unanswered: int

    @classmethod
    def bound(cls, sock: AssociationSocket, max_pdu_length: int, max_message: int) -> None:
        """Give an existing socket wrapper these limits. (Creating a second wrapper would
        signal a second connection to pynetdicom's state machine.)"""
        sock.__class__ = cls
        bounded: BoundedAssociationSocket = sock  # type: ignore[assignment]
        bounded._max_read = max(max_pdu_length + PDU_HEADER_LENGTH, MIN_PDU_LIMIT)
        bounded._max_message = max_message + MIN_PDU_LIMIT  # room for command sets and headers
        bounded._unanswered = 0

    def send(self, bytestream: bytes) -> None:
        self._unanswered = 0
        super().send(bytestream)

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self._max_read:
            log.warning(
                "peer %s declared a %d byte PDU (limit %d): connection dropped",
                self.assoc.requestor.address,
                nr_bytes,
                self._max_read,
            )
            # pynetdicom treats a short read as a closed connection and aborts.
            return bytearray()
        self._unanswered += nr_bytes
        if self._unanswered > self._max_message:
            log.warning(
                "peer %s sent more than %d bytes without an answer (object size limit): "
                "connection dropped",
                self.assoc.requestor.address,
                self._max_message,
            )
            return bytearray()
        sock = self.socket
        assert sock is not None
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
            count = sock.recv_into(view[received:], nr_bytes - received)
            if count == 0:
                return buffer[:received]  # peer closed: pynetdicom sees the short read
            received += count
        return buffer


class BoundedRequestHandler(RequestHandler):
    """Creates each association with a BoundedAssociationSocket, after the TLS handshake when
    the connection came in on the TLS listener."""

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket) and not self._complete_handshake(self.request):
            return
        super().handle()

    def _complete_handshake(self, sock: ssl.SSLSocket) -> bool:
        """The listener only accepted the connection (pynetdicom would shake hands in its one
        accepting thread, where a peer that sends nothing would stall every other peer). A
        failed handshake (no client certificate, an untrusted one, an old protocol version)
        closes the connection before any DICOM is exchanged."""
        sock.settimeout(self.ae.network_timeout)
        try:
            sock.do_handshake()
        except (OSError, ValueError) as error:  # ssl.SSLError, timeout, reset by the peer
            log.warning("TLS handshake with %s failed: %s", self.client_address[0], error)
            # On record before the peer sees the connection close.
            on_failure = getattr(self.server, "on_handshake_failure", None)
            if on_failure is not None:
                on_failure(str(self.client_address[0]), str(error))
            with contextlib.suppress(OSError):
                sock.close()
            return False
        sock.settimeout(None)  # pynetdicom polls its sockets with select()
        log.debug(
            "TLS %s with %s, client certificate %s",
            sock.version(),
            self.client_address[0],
            (sock.getpeercert() or {}).get("subject", "none"),
        )
        return True

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        max_pdu = int(self.ae.maximum_pdu_size or 0)
        max_message = int(getattr(self.server, "max_object_size", 0) or 0)
        if max_pdu and max_message and assoc.dul.socket is not None:
            BoundedAssociationSocket.bound(assoc.dul.socket, max_pdu, max_message)
        adapt_reactor_delays(assoc)
        return assoc


# pynetdicom moves every DIMSE message between two polling threads per association: the DUL
# reactor sleeps 1 ms whenever its queues are momentarily empty, and the association reactor
# sleeps 1 ms on every loop. Each C-STORE, and each of a C-FIND's responses, would wait 1-2 ms
# for nothing. While an association is busy its reactors sleep only ACTIVE_DELAY; an idle one
# keeps pynetdicom's 1 ms, so associations a modality holds open cost no more CPU than before.
ACTIVE_DELAY = 0.0002
IDLE_DELAY = 0.001
BUSY_WINDOW = 0.05  # seconds after the last message during which an association counts as busy
_ASSOCIATION_LOOP_DELAY = 0.001


class AdaptiveDULServiceProvider(DULServiceProvider):
    """pynetdicom's DUL provider, with an idle sleep that depends on recent activity."""

    _busy_until = 0.0

    @property
    def _run_loop_delay(self) -> float:
        return ACTIVE_DELAY if time.monotonic() < self._busy_until else IDLE_DELAY

    @_run_loop_delay.setter
    def _run_loop_delay(self, _value: float) -> None:
        """pynetdicom sets its fixed delay in __init__; the property decides instead."""

    def _process_recv_primitive(self) -> bool:
        if super()._process_recv_primitive():
            self._busy_until = time.monotonic() + BUSY_WINDOW
            return True
        return False

    def _is_transport_event(self) -> bool:
        if super()._is_transport_event():
            self._busy_until = time.monotonic() + BUSY_WINDOW
            return True
        return False

    @classmethod
    def adopt(cls, dul: DULServiceProvider) -> None:
        dul.__class__ = cls


class _ReactorClock:
    """Stands in for the `time` module inside pynetdicom.association: the association
    reactor's 1 ms loop sleep is shortened while its association is busy."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds == _ASSOCIATION_LOOP_DELAY:
            # The reactor loop runs in the Association thread itself.
            dul = getattr(threading.current_thread(), "dul", None)
            if time.monotonic() < getattr(dul, "_busy_until", 0.0):
                seconds = ACTIVE_DELAY
        time.sleep(seconds)


def shorten_reactor_delays() -> None:
    """Install the activity-dependent association reactor sleep (once per process)."""
    setattr(pynetdicom_association, "time", _ReactorClock())  # noqa: B010 (module attribute)


def adapt_reactor_delays(assoc: Any) -> None:
    """Give an association's DUL provider the activity-dependent idle sleep."""
    if not isinstance(assoc.dul, AdaptiveDULServiceProvider):
        AdaptiveDULServiceProvider.adopt(assoc.dul)
