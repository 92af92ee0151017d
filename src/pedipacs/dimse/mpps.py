"""Modality Performed Procedure Step SCP (PS3.4 Annex F): N-CREATE and N-SET -> DICOM JSON ->
PerformedStepService -> status.

The statuses are those PS3.4 F.7.2 and PS3.7 Annex C name for N-CREATE and N-SET; this table is
the MPPS part of the door's status translation (next to `status.py`, which holds the C-services').
"""

from __future__ import annotations

import logging
from enum import IntEnum
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from pedipacs import metrics
from pedipacs.archive.peers import PeerService
from pedipacs.dimse.access import require
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.status import error_comment, status_class, status_dataset
from pedipacs.errors import (
    NotDicomError,
    PedipacsError,
    PermissionDenied,
    StorageUnavailable,
)
from pedipacs.model.records import DimseOperation
from pedipacs.ris.performed import (
    AttributeRuleError,
    InvalidAttributeValueError,
    InvalidSopInstanceUidError,
    PerformedStepEndedError,
    PerformedStepExistsError,
    PerformedStepService,
    RequiredAttributeMissingError,
    RequiredValueMissingError,
    UnknownPerformedStepError,
)

log = logging.getLogger(__name__)

MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"


class MppsStatus(IntEnum):
    """N-CREATE / N-SET statuses (PS3.7 C.4, PS3.4 Table F.7.2-2)."""

    SUCCESS = 0x0000
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110  # with Error ID 0xA710 when the step has ended
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_OBJECT_INSTANCE = 0x0117
    NO_SUCH_SOP_CLASS = 0x0118
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    NOT_AUTHORIZED = 0x0124
    RESOURCE_LIMITATION = 0x0213


# PS3.4 Table F.7.2-2: the Error ID that goes with "may no longer be updated".
MAY_NO_LONGER_BE_UPDATED = 0xA710

# Most specific first: the first matching class wins.
_MPPS_STATUS: tuple[tuple[type[PedipacsError], MppsStatus], ...] = (
    (PermissionDenied, MppsStatus.NOT_AUTHORIZED),
    (StorageUnavailable, MppsStatus.RESOURCE_LIMITATION),
    (PerformedStepExistsError, MppsStatus.DUPLICATE_SOP_INSTANCE),
    (UnknownPerformedStepError, MppsStatus.NO_SUCH_SOP_INSTANCE),
    (PerformedStepEndedError, MppsStatus.PROCESSING_FAILURE),
    (InvalidSopInstanceUidError, MppsStatus.INVALID_OBJECT_INSTANCE),
    (RequiredAttributeMissingError, MppsStatus.MISSING_ATTRIBUTE),
    (RequiredValueMissingError, MppsStatus.MISSING_ATTRIBUTE_VALUE),
    (InvalidAttributeValueError, MppsStatus.INVALID_ATTRIBUTE_VALUE),
    (NotDicomError, MppsStatus.PROCESSING_FAILURE),
)


def mpps_status_from_error(error: PedipacsError) -> MppsStatus:
    for error_type, status in _MPPS_STATUS:
        if isinstance(error, error_type):
            return status
    return MppsStatus.PROCESSING_FAILURE


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
