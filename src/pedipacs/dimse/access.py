"""Who may talk to pedipacs over DIMSE, and ask what: the peer registry, checked once per
association (EVT_REQUESTED) and then for every request on it."""

from __future__ import annotations

import logging
from typing import Any

from pedipacs.archive.peers import PeerService
from pedipacs.dimse.origin import origin_from_event
from pedipacs.errors import PedipacsError, UnknownCallingAeError
from pedipacs.model.origin import Origin
from pedipacs.model.records import DimseOperation
from pedipacs.security.permissions import PEER_OPERATION_PERMISSIONS, Principal, PrincipalKind

log = logging.getLogger(__name__)

# An association that was never admitted (cannot happen after EVT_REQUESTED) may do nothing.
NOBODY = Principal(PrincipalKind.PEER, "", frozenset())

# Where the calling AE's Principal (its granted operations) is kept for the association.
PRINCIPAL = "_pedipacs_principal"
# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source (DUL service user) and reason.
REJECTED_PERMANENT, REJECTED_TRANSIENT = 0x01, 0x02
SERVICE_USER = 0x01
NO_REASON, CALLING_AE_NOT_RECOGNISED = 0x01, 0x03


def check_calling_ae(event: Any, peers: PeerService) -> None:
    """EVT_REQUESTED: reject an association the peer registry refuses, and remember what the
    calling AE may do for the association's lifetime."""
    # The association's requestor details are filled in by the negotiation that follows: the
    # calling AE title is read from the A-ASSOCIATE-RQ itself.
    primitive = event.assoc.requestor.primitive
    origin = Origin.dimse(
        remote_ae=_text(primitive.calling_ae_title),
        called_ae=_text(primitive.called_ae_title),
        remote_host=str(event.assoc.requestor.address),
    )
    try:
        principal = peers.admit(origin)
    except UnknownCallingAeError as error:
        log.warning("association refused: %s (from %s)", error, origin.remote_host)
        _reject(event, REJECTED_PERMANENT, CALLING_AE_NOT_RECOGNISED)
        return
    except PedipacsError as error:
        log.error("association from %s refused for now: %s", origin.remote_ae, error)
        _reject(event, REJECTED_TRANSIENT, NO_REASON)
        return
    setattr(event.assoc, PRINCIPAL, principal)


def _reject(event: Any, result: int, reason: int) -> None:
    """Send the A-ASSOCIATE-RJ and wait until it has left: pynetdicom closes the socket as soon
    as the handler returns, which would otherwise beat the queued PDU (the peer would see an
    abort instead of the reason). The same steps as pynetdicom's own rejections."""
    event.assoc.acse.send_reject(result, SERVICE_USER, reason)
    event.assoc.kill()


def _text(value: object) -> str:
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
    return text.strip()


def require(event: Any, operation: DimseOperation, peers: PeerService) -> None:
    """Raise OperationNotPermittedError (audited) unless the association was granted it."""
    principal: Principal = getattr(event.assoc, PRINCIPAL, NOBODY)
    permission = PEER_OPERATION_PERMISSIONS.get(operation)
    if permission is None or principal.may(permission):  # the common case: no Origin, no call
        return
    peers.require(principal, operation, origin_from_event(event))
