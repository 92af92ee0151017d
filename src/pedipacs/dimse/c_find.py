"""C-FIND SCP, Patient Root, Study Root and Modality Worklist: identifier -> Query ->
QueryService -> datasets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pedipacs import metrics
from pedipacs.archive.peers import PeerService
from pedipacs.archive.query import QueryService
from pedipacs.dimse.access import require
from pedipacs.dimse.identifier import dataset_from_match, query_from_identifier
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.status import Status, error_comment, query_status_from_error, status_dataset
from pedipacs.errors import PedipacsError
from pedipacs.model.levels import InformationModel
from pedipacs.model.records import DimseOperation

log = logging.getLogger(__name__)

FIND_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.1": InformationModel.PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.1": InformationModel.STUDY_ROOT,
    "1.2.840.10008.5.1.4.31": InformationModel.MODALITY_WORKLIST,
}


def handle_c_find(
    event: Any, queries: QueryService, peers: PeerService, ae_title: str
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    model = FIND_MODELS[event.request.AffectedSOPClassUID]
    is_worklist = model is InformationModel.MODALITY_WORKLIST
    origin = origin_from_event(event)
    try:
        require(event, DimseOperation.WORKLIST if is_worklist else DimseOperation.FIND, peers)
        query = query_from_identifier(event.identifier, model)
        retrieve_ae_title = None if is_worklist else ae_title
        for match in queries.find(query, origin):
            if event.is_cancelled:
                yield int(Status.CANCEL), None
                return
            yield (
                int(Status.PENDING),
                dataset_from_match(match, query.level, retrieve_ae_title=retrieve_ae_title),
            )
    except PedipacsError as error:
        status = query_status_from_error(error)
        log.warning("C-FIND from %s refused with 0x%04X: %s", origin.remote_ae, status, error)
        metrics.DIMSE_REQUESTS.labels("C-FIND", "failure").inc()
        yield status_dataset(status, error_comment(error)), None
        return
    metrics.DIMSE_REQUESTS.labels("C-FIND", "success").inc()
