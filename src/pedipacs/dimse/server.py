"""Build the DICOM Application Entity and start its listener with the handlers bound."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.presentation import AllStoragePresentationContexts, build_context
from pynetdicom.transport import ThreadedAssociationServer

from pedipacs import metrics
from pedipacs.archive.commitment import CommitmentService
from pedipacs.archive.ingest import IngestService
from pedipacs.archive.peers import PeerService
from pedipacs.archive.query import QueryService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.dicom.sop_classes import storage_sop_classes
from pedipacs.dimse.access import check_calling_ae
from pedipacs.dimse.c_echo import handle_c_echo
from pedipacs.dimse.c_find import FIND_MODELS, handle_c_find
from pedipacs.dimse.c_get import GET_MODELS, handle_c_get
from pedipacs.dimse.c_move import MOVE_MODELS, handle_c_move
from pedipacs.dimse.c_store import handle_c_store
from pedipacs.dimse.commitment import STORAGE_COMMITMENT_PUSH_MODEL, handle_n_action
from pedipacs.dimse.mpps import MODALITY_PERFORMED_PROCEDURE_STEP, handle_n_create, handle_n_set
from pedipacs.dimse.sending import nodelay_handler
from pedipacs.dimse.transport import (
    BoundedRequestHandler,
    adapt_reactor_delays,
    shorten_reactor_delays,
)
from pedipacs.ris.performed import PerformedStepService

VERIFICATION = "1.2.840.10008.1.1"
_LAST = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2")
# pynetdicom accepts, per context, the first syntax of OUR list that the peer proposed. Explicit
# VR Little Endian first keeps the VRs; compressed syntaxes next so images keep the encoding the
# modality chose; deflated, big endian and implicit VR only when nothing else is offered.
ACCEPTANCE_ORDER = [
    "1.2.840.10008.1.2.1",
    *(ts for ts in ALL_TRANSFER_SYNTAXES if ts not in ("1.2.840.10008.1.2.1", *_LAST)),
    *_LAST,
]
QUERY_RETRIEVE_CLASSES = (*FIND_MODELS, *MOVE_MODELS, *GET_MODELS)


@dataclass(frozen=True, slots=True)
class DimseServices:
    ingest: IngestService
    queries: QueryService
    retrieve: RetrieveService
    peers: PeerService
    commitments: CommitmentService
    performed_steps: PerformedStepService


class PedipacsAssociationServer(ThreadedAssociationServer):
    """Several worker processes may listen on one port (SO_REUSEPORT): the kernel spreads
    associations over them, so ingest is not bound to one interpreter. The plain and the TLS
    listener are both of this class."""

    max_object_size = 0  # bytes; set by start_server, enforced by BoundedRequestHandler
    # Told about failed TLS handshakes (address, reason), to put them on the audit trail.
    on_handshake_failure: Callable[[str, str], None] | None = None

    def server_bind(self) -> None:
        if self.socket is not None and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; with TLS, wrap it without shaking hands here: the handshake
        runs in the association's thread (BoundedRequestHandler)."""
        assert self.socket is not None
        connection, address = self.socket.accept()
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address


def build_ae(
    ae_title: str, *, max_pdu_size: int, max_associations: int, network_timeout: float
) -> AE:
    # Retrieves stream stored files from disk in chunks instead of decoding them.
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    # pynetdicom formats every C-FIND identifier for its debug log even when nobody logs at
    # DEBUG: about 8% of each answer's cost. pedipacs logs what it needs itself.
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    shorten_reactor_delays()
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = max_pdu_size
    ae.maximum_associations = max_associations
    ae.network_timeout = network_timeout
    ae.dimse_timeout = network_timeout
    ae.acse_timeout = network_timeout
    ae.add_supported_context(VERIFICATION, ACCEPTANCE_ORDER)
    known = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
    for sop_class in storage_sop_classes(known):
        # scu_role/scp_role: accept the role selection a C-GET requestor proposes.
        ae.add_supported_context(sop_class, ACCEPTANCE_ORDER, scu_role=True, scp_role=True)
    for sop_class in QUERY_RETRIEVE_CLASSES:
        ae.add_supported_context(sop_class, ACCEPTANCE_ORDER)
    # We are its SCP; accept the roles a requestor proposes (some offer to take the report as
    # SCP on this association; pedipacs sends it on a new one, see dimse/commitment.py).
    ae.add_supported_context(
        STORAGE_COMMITMENT_PUSH_MODEL, ACCEPTANCE_ORDER, scu_role=True, scp_role=True
    )
    ae.add_supported_context(MODALITY_PERFORMED_PROCEDURE_STEP, ACCEPTANCE_ORDER)
    return ae


def prefer_requestor_order(event: Any) -> None:
    """Accept, in each presentation context, the first syntax the *peer* proposed that we
    support: a modality keeps the encoding it prefers, and a C-GET requestor that proposes the
    stored syntax first gets the stored bytes unchanged. (pynetdicom would otherwise follow our
    list's order.)"""
    if event.assoc.is_rejected or event.assoc.is_aborted:
        return
    proposed: dict[str, list[str]] = {}
    for context in event.assoc.requestor.primitive.presentation_context_definition_list:
        syntaxes = proposed.setdefault(str(context.abstract_syntax), [])
        syntaxes.extend(str(ts) for ts in context.transfer_syntax if str(ts) not in syntaxes)
    reordered = []
    for context in event.assoc.acceptor.supported_contexts:
        wanted = proposed.get(str(context.abstract_syntax))
        if wanted:
            ours = [str(ts) for ts in context.transfer_syntax]
            first = [ts for ts in wanted if ts in ours]
            context = build_context(
                context.abstract_syntax, first + [ts for ts in ours if ts not in first]
            )
            context.scu_role, context.scp_role = True, True
        reordered.append(context)
    event.assoc.acceptor.supported_contexts = reordered


def event_handlers(services: DimseServices, ae_title: str) -> list[Any]:
    return [
        # First: an unknown calling AE is rejected before anything else is negotiated.
        (evt.EVT_REQUESTED, check_calling_ae, [services.peers]),
        (evt.EVT_REQUESTED, prefer_requestor_order),
        (evt.EVT_CONN_OPEN, _connection_opened),
        (evt.EVT_CONN_CLOSE, _connection_closed),
        (evt.EVT_ACCEPTED, _count_association, ["accepted"]),
        (evt.EVT_REJECTED, _count_association, ["rejected"]),
        (evt.EVT_ABORTED, _count_association, ["aborted"]),
        (evt.EVT_C_ECHO, handle_c_echo),
        (evt.EVT_C_STORE, handle_c_store, [services.ingest, services.peers]),
        (evt.EVT_C_FIND, handle_c_find, [services.queries, services.peers, ae_title]),
        (evt.EVT_C_GET, handle_c_get, [services.retrieve, services.peers]),
        (evt.EVT_C_MOVE, handle_c_move, [services.retrieve, services.peers]),
        (evt.EVT_N_ACTION, handle_n_action, [services.commitments, services.peers]),
        (evt.EVT_N_CREATE, handle_n_create, [services.performed_steps, services.peers]),
        (evt.EVT_N_SET, handle_n_set, [services.performed_steps, services.peers]),
    ]


def start_server(
    ae: AE,
    host: str,
    port: int,
    handlers: list[Any],
    *,
    max_object_size: int,
    ssl_context: ssl.SSLContext | None = None,
    on_handshake_failure: Callable[[str, str], None] | None = None,
) -> Any:
    """Start listening in a background thread; returns the server (call .shutdown()).
    With `ssl_context` every connection is DICOM over TLS (PS3.15 Annex B), and a failed
    handshake is reported to `on_handshake_failure(address, reason)`."""
    server = cast(
        PedipacsAssociationServer,
        ae.make_server(
            (host, port),
            ssl_context=ssl_context,
            evt_handlers=handlers,
            server_class=PedipacsAssociationServer,
            request_handler=BoundedRequestHandler,
        ),
    )
    server.max_object_size = max_object_size
    server.on_handshake_failure = on_handshake_failure
    name = "dimse-acceptor" if ssl_context is None else "dimse-tls-acceptor"
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    ae._servers.append(server)  # so ae.shutdown() stops it too
    return server


def _count_association(_event: Any, outcome: str) -> None:
    metrics.ASSOCIATIONS.labels(outcome).inc()


def _connection_opened(event: Any) -> None:
    nodelay_handler(event)
    adapt_reactor_delays(event.assoc)  # also for the associations pedipacs opens (C-MOVE)
    metrics.ACTIVE_ASSOCIATIONS.inc()


def _connection_closed(_event: Any) -> None:
    metrics.ACTIVE_ASSOCIATIONS.dec()
