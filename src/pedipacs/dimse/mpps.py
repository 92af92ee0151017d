"""Modality Performed Procedure Step SCP (PS3.4 Annex F): N-CREATE and N-SET -> DICOM JSON ->
PerformedStepService -> status (the MPPS table of `status.py`)."""

from __future__ import annotations

import logging
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from pedipacs import metrics
from pedipacs.archive.peers import PeerService
from pedipacs.dimse.access import require
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.status import (
    MAY_NO_LONGER_BE_UPDATED,
    MppsStatus,
    error_comment,
    mpps_status_from_error,
    status_class,
    status_dataset,
)
from pedipacs.errors import NotDicomError, PedipacsError
from pedipacs.model.records import DimseOperation
from pedipacs.ris.performed import PerformedStepEndedError, PerformedStepService
from pedipacs.ris.performed_attributes import AttributeRuleError

log = logging.getLogger(__name__)

MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"


def handle_n_create(
    event: Any, performed_steps: PerformedStepService, peers: PeerService
) -> tuple[int | Dataset, Dataset | None]:
    origin = origin_from_event(event)
    requested_uid = event.request.AffectedSOPInstanceUID
    if event.request.AffectedSOPClassUID != MODALITY_PERFORMED_PROCEDURE_STEP:
        return _not_mpps("N-CREATE", event.request.AffectedSOPClassUID), None
    try:
        require(event, DimseOperation.WORKLIST, peers)
        attributes = _json_from(event.attribute_list)
        created = performed_steps.create(
            str(requested_uid) if requested_uid else None, attributes, origin
        )
    except PedipacsError as error:
        return _refused("N-CREATE", error, origin.remote_ae, has_identifier_list=False), None
    metrics.DIMSE_REQUESTS.labels("N-CREATE", "success").inc()
    reply = Dataset()
    if not requested_uid:  # PS3.7 10.1.5.1.4: the response names the UID pedipacs chose
        reply.AffectedSOPInstanceUID = created.sop_instance_uid
    return int(MppsStatus.SUCCESS), reply


def handle_n_set(
    event: Any, performed_steps: PerformedStepService, peers: PeerService
) -> tuple[int | Dataset, Dataset | None]:
    origin = origin_from_event(event)
    if event.request.RequestedSOPClassUID != MODALITY_PERFORMED_PROCEDURE_STEP:
        return _not_mpps("N-SET", event.request.RequestedSOPClassUID), None
    try:
        require(event, DimseOperation.WORKLIST, peers)
        modifications = _json_from(event.modification_list)
        performed_steps.update(str(event.request.RequestedSOPInstanceUID), modifications, origin)
    except PedipacsError as error:
        return _refused("N-SET", error, origin.remote_ae, has_identifier_list=True), None
    metrics.DIMSE_REQUESTS.labels("N-SET", "success").inc()
    return int(MppsStatus.SUCCESS), None


def _json_from(dataset: Dataset) -> dict[str, Any]:
    """The request's attributes as DICOM JSON, text decoded with its Specific Character Set."""
    try:
        return dict(dataset.to_json_dict())
    except Exception as error:  # pydicom raises many types on garbage; none may pass as success
        raise NotDicomError(f"the attribute list cannot be decoded: {error}") from error


def _not_mpps(service: str, sop_class_uid: object) -> Dataset:
    """EVT_N_CREATE and EVT_N_SET fire for every SOP class: these handlers serve MPPS only."""
    metrics.DIMSE_REQUESTS.labels(service, "failure").inc()
    return status_dataset(
        int(MppsStatus.NO_SUCH_SOP_CLASS), f"{service} of SOP Class {sop_class_uid} is not served"
    )


def _refused(
    service: str, error: PedipacsError, remote_ae: str | None, *, has_identifier_list: bool
) -> Dataset:
    status = mpps_status_from_error(error)
    log.warning("%s from %s refused with 0x%04X: %s", service, remote_ae, status, error)
    metrics.DIMSE_REQUESTS.labels(service, status_class(status)).inc()
    reply = status_dataset(int(status), error_comment(error))
    if isinstance(error, PerformedStepEndedError):
        reply.ErrorID = MAY_NO_LONGER_BE_UPDATED
    # pynetdicom carries an Attribute Identifier List in N-SET responses only.
    if has_identifier_list and isinstance(error, AttributeRuleError):
        tag = tag_for_keyword(error.keyword)
        if tag is not None:
            reply.AttributeIdentifierList = [tag]
    return reply
