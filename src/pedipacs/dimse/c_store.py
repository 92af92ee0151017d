"""C-STORE SCP: the received bytes go, unchanged, to the one ingest service."""

from __future__ import annotations

import logging
from typing import Any

from pedipacs import metrics
from pedipacs.archive.ingest import IngestService
from pedipacs.archive.peers import PeerService
from pedipacs.dimse.access import require
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.status import Status, status_class, store_status_from_error
from pedipacs.errors import PedipacsError
from pedipacs.model.records import DimseOperation

log = logging.getLogger(__name__)


def handle_c_store(event: Any, ingest: IngestService, peers: PeerService) -> int:
    origin = origin_from_event(event)
    try:
        require(event, DimseOperation.STORE, peers)
        ingest.ingest(event.encoded_dataset(include_meta=True), origin)
        status = int(Status.SUCCESS)
    except PedipacsError as error:
        status = store_status_from_error(error)
        log.warning(
            "C-STORE from %s@%s refused with 0x%04X: %s",
            origin.remote_ae,
            origin.remote_host,
            status,
            error,
        )
    metrics.DIMSE_REQUESTS.labels("C-STORE", status_class(status)).inc()
    return status
