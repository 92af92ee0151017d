"""C-GET SCP: the instances go back over the requestor's own association."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pedipacs import metrics
from pedipacs.archive.peers import PeerService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.dimse.access import require
from pedipacs.dimse.identifier import retrieve_query_from_identifier
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.sending import (
    accepted_syntaxes,
    dataset_for_peer,
    send_stored_files_unchanged,
    unsendable_dataset,
)
from pedipacs.dimse.status import Status, error_comment, query_status_from_error, status_dataset
from pedipacs.errors import PedipacsError
from pedipacs.model.levels import InformationModel
from pedipacs.model.records import DimseOperation

log = logging.getLogger(__name__)

GET_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.3": InformationModel.PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.3": InformationModel.STUDY_ROOT,
}


def handle_c_get(event: Any, retrieve: RetrieveService, peers: PeerService) -> Iterator[Any]:
    model = GET_MODELS[event.request.AffectedSOPClassUID]
    origin = origin_from_event(event)
    try:
        require(event, DimseOperation.GET, peers)
        query = retrieve_query_from_identifier(event.identifier, model)
        locations = retrieve.locate(query, origin, purpose="C-GET")
    except PedipacsError as error:
        status = query_status_from_error(error)
        log.warning("C-GET from %s refused with 0x%04X: %s", origin.remote_ae, status, error)
        metrics.DIMSE_REQUESTS.labels("C-GET", "failure").inc()
        yield 0
        yield status_dataset(status, error_comment(error)), None
        return
    yield len(locations)
    send_stored_files_unchanged(event.assoc)
    # Roles were negotiated per SOP class: we may only send on contexts where we are SCU.
    contexts = [cx for cx in event.assoc.accepted_contexts if cx.as_scu]
    for location in locations:
        if event.is_cancelled:
            yield int(Status.CANCEL), None
            return
        try:
            dataset: Dataset = dataset_for_peer(
                location, retrieve, accepted_syntaxes(contexts, location.sop_class_uid)
            )
        except PedipacsError as error:
            log.warning("C-GET cannot send %s: %s", location.sop_instance_uid, error)
            dataset = unsendable_dataset(location)
        yield int(Status.PENDING), dataset
    metrics.DIMSE_REQUESTS.labels("C-GET", "success").inc()
