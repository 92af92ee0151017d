"""The listening socket's side of pynetdicom, with the limits a PACS on a hospital network needs.

pynetdicom reads whatever PDU length a peer declares into memory, 4 KiB per system call. Here a
PDU longer than we negotiated drops the connection before anything is buffered, and PDUs are
read straight into one buffer.
"""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom.transport import AssociationSocket, RequestHandler

log = logging.getLogger(__name__)

# The A-ASSOCIATE-RQ is not bound by the negotiated maximum and may list 128 contexts.
MIN_PDU_LIMIT = 1024 * 1024
PDU_HEADER_LENGTH = 6


class BoundedAssociationSocket(AssociationSocket):
    """An AssociationSocket that refuses PDUs longer than `_max_read` bytes."""

    _max_read: int

    @classmethod
    def bound(cls, sock: AssociationSocket, max_pdu_length: int) -> None:
        """Give an existing socket wrapper these limits. (Creating a second wrapper would
        signal a second connection to pynetdicom's state machine.)"""
        sock.__class__ = cls
        sock._max_read = max(max_pdu_length + PDU_HEADER_LENGTH, MIN_PDU_LIMIT)  # type: ignore[attr-defined]

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
    """Creates each association with a BoundedAssociationSocket."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        max_pdu = int(self.ae.maximum_pdu_size or 0)
        if max_pdu and assoc.dul.socket is not None:
            BoundedAssociationSocket.bound(assoc.dul.socket, max_pdu)
        return assoc
