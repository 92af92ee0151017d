"""C-MOVE SCP: the instances go to a destination named in the peer registry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt

from pedipacs import metrics
from pedipacs.archive.peers import PeerService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.dimse.access import require
from pedipacs.dimse.identifier import retrieve_query_from_identifier
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.sending import (
    accepted_syntaxes,
    contexts_for,
    dataset_for_peer,
    nodelay_handler,
    send_stored_files_unchanged,
    unsendable_dataset,
)
from pedipacs.dimse.status import Status, query_status_from_error
from pedipacs.errors import PedipacsError, UnknownPeerError
from pedipacs.model.levels import InformationModel
from pedipacs.model.records import DimseOperation

log = logging.getLogger(__name__)

MOVE_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.2": InformationModel.PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.2": InformationModel.STUDY_ROOT,
}


class MoveRefusedError(RuntimeError):
    """Raised before the first yield: pynetdicom then answers with a C-MOVE failure status."""


def handle_c_move(event: Any, retrieve: RetrieveService, peers: PeerService) -> Iterator[Any]:
    model = MOVE_MODELS[event.request.AffectedSOPClassUID]
    origin = origin_from_event(event)
    destination_ae = str(event.move_destination).strip()
    try:
        peer = peers.by_ae_title(destination_ae)
    except UnknownPeerError:
        log.warning("C-MOVE from %s to unknown destination %r", origin.remote_ae, destination_ae)
        metrics.DIMSE_REQUESTS.labels("C-MOVE", "failure").inc()
        yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
        return
    try:
        require(event, DimseOperation.MOVE, peers)
        query = retrieve_query_from_identifier(event.identifier, model)
        locations = retrieve.locate(query, origin, purpose=f"C-MOVE to {destination_ae}")
    except PedipacsError as error:
        status = query_status_from_error(error)
        log.warning("C-MOVE from %s refused (0x%04X): %s", origin.remote_ae, status, error)
        metrics.DIMSE_REQUESTS.labels("C-MOVE", "failure").inc()
        raise MoveRefusedError(str(error)) from error

    # The sub-association is opened by pynetdicom; we learn its accepted contexts here.
    sub_association: list[Any] = []
    yield (
        peer.host,
        peer.port,
        {
            "contexts": contexts_for(locations) or None,
            "ae_title": peer.ae_title,
            "evt_handlers": [
                (evt.EVT_CONN_OPEN, nodelay_handler),
                (evt.EVT_ACCEPTED, _remember_association, [sub_association]),
            ],
        },
    )
    yield len(locations)
    for location in locations:
        if event.is_cancelled:
            yield int(Status.CANCEL), None
            return
        contexts = sub_association[0].accepted_contexts if sub_association else []
        try:
            dataset: Dataset = dataset_for_peer(
                location, retrieve, accepted_syntaxes(contexts, location.sop_class_uid)
            )
        except PedipacsError as error:
            log.warning("C-MOVE cannot send %s: %s", location.sop_instance_uid, error)
            dataset = unsendable_dataset(location)
        yield int(Status.PENDING), dataset
    metrics.DIMSE_REQUESTS.labels("C-MOVE", "success").inc()


def _remember_association(event: Any, holder: list[Any]) -> None:
    send_stored_files_unchanged(event.assoc)
    holder.append(event.assoc)
