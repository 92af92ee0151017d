"""Build the DICOM Application Entity and start its listener with the handlers bound."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.transport import ThreadedAssociationServer

from pedipacs import metrics
from pedipacs.archive.ingest import IngestService
from pedipacs.archive.peers import PeerService
from pedipacs.archive.query import QueryService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.dimse.c_echo import handle_c_echo
from pedipacs.dimse.c_find import FIND_MODELS, handle_c_find
from pedipacs.dimse.c_get import GET_MODELS, handle_c_get
from pedipacs.dimse.c_move import MOVE_MODELS, handle_c_move
from pedipacs.dimse.c_store import handle_c_store
from pedipacs.dimse.sending import nodelay_handler

VERIFICATION = "1.2.840.10008.1.1"
QUERY_RETRIEVE_CLASSES = (*FIND_MODELS, *MOVE_MODELS, *GET_MODELS)


@dataclass(frozen=True, slots=True)
class DimseServices:
    ingest: IngestService
    queries: QueryService
    retrieve: RetrieveService
    peers: PeerService


class PedipacsAssociationServer(ThreadedAssociationServer):
    """Several worker processes may listen on one port (SO_REUSEPORT): the kernel spreads
    associations over them, so ingest is not bound to one interpreter."""

    def server_bind(self) -> None:
        if self.socket is not None and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def build_ae(
    ae_title: str, *, max_pdu_size: int, max_associations: int, network_timeout: float
) -> AE:
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = max_pdu_size
    ae.maximum_associations = max_associations
    ae.network_timeout = network_timeout
    ae.dimse_timeout = network_timeout
    ae.acse_timeout = network_timeout
    ae.add_supported_context(VERIFICATION, ALL_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        # scu_role/scp_role: accept the role selection a C-GET requestor proposes.
        if context.abstract_syntax:
            ae.add_supported_context(
                context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
    for sop_class in QUERY_RETRIEVE_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


def event_handlers(services: DimseServices, ae_title: str) -> list[Any]:
    return [
        (evt.EVT_CONN_OPEN, _connection_opened),
        (evt.EVT_CONN_CLOSE, _connection_closed),
        (evt.EVT_ACCEPTED, _count_association, ["accepted"]),
        (evt.EVT_REJECTED, _count_association, ["rejected"]),
        (evt.EVT_ABORTED, _count_association, ["aborted"]),
        (evt.EVT_C_ECHO, handle_c_echo),
        (evt.EVT_C_STORE, handle_c_store, [services.ingest]),
        (evt.EVT_C_FIND, handle_c_find, [services.queries, ae_title]),
        (evt.EVT_C_GET, handle_c_get, [services.retrieve]),
        (evt.EVT_C_MOVE, handle_c_move, [services.retrieve, services.peers]),
    ]


def start_server(ae: AE, host: str, port: int, handlers: list[Any]) -> Any:
    """Start listening in a background thread; returns the server (call .shutdown())."""
    server = ae.make_server(
        (host, port), evt_handlers=handlers, server_class=PedipacsAssociationServer
    )
    thread = threading.Thread(target=server.serve_forever, name="dimse-acceptor", daemon=True)
    thread.start()
    ae._servers.append(server)  # so ae.shutdown() stops it too
    return server


def _count_association(_event: Any, outcome: str) -> None:
    metrics.ASSOCIATIONS.labels(outcome).inc()


def _connection_opened(event: Any) -> None:
    nodelay_handler(event)
    metrics.ACTIVE_ASSOCIATIONS.inc()


def _connection_closed(_event: Any) -> None:
    metrics.ACTIVE_ASSOCIATIONS.dec()
