"""The ONE table from domain errors to DIMSE status codes: one table per service, most specific
error first (the first matching class wins); an error no row names gets the service's general
failure. C-STORE and the query/retrieve services (PS3.4 Annexes B and C), MPPS N-CREATE and
N-SET (PS3.4 F.7.2), Storage Commitment N-ACTION and its Failure Reasons (PS3.4 J.3), all with
the statuses of PS3.7 Annex C."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from pydicom.dataset import Dataset

from pedipacs.archive.commitment import CommitmentFailureReason
from pedipacs.errors import (
    Conflict,
    DecodedSizeTooLargeError,
    DuplicateInstanceRejected,
    InconsistentIdentityError,
    InvalidInput,
    InvalidQueryError,
    MissingAttributeError,
    NotDicomError,
    NotFound,
    NotTheWellKnownInstanceError,
    PedipacsError,
    PermissionDenied,
    QueryTooBroadError,
    StorageUnavailable,
    TranscodingError,
    UnknownMoveDestinationError,
    UnsupportedActionTypeError,
)
from pedipacs.ris.performed import (
    InvalidSopInstanceUidError,
    PerformedStepEndedError,
    PerformedStepExistsError,
    UnknownPerformedStepError,
)
from pedipacs.ris.performed_attributes import (
    InvalidAttributeValueError,
    RequiredAttributeMissingError,
    RequiredValueMissingError,
)

_Status = TypeVar("_Status", bound=int)
_StatusTable = tuple[tuple[type[PedipacsError], _Status], ...]


def _status_from(error: PedipacsError, table: _StatusTable[_Status], otherwise: _Status) -> _Status:
    return next((status for kind, status in table if isinstance(error, kind)), otherwise)


# -- C-STORE, C-FIND, C-MOVE, C-GET --------------------------------------------------------------


class Status(IntEnum):
    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01  # C-FIND: optional keys not supported
    CANCEL = 0xFE00
    WARNING_SUBOPERATIONS_FAILED = 0xB000
    # Refused: Out of Resources. C-STORE: storage or database cannot be written. C-FIND: more
    # matches than `max_query_results` (the request is refused before any match is sent).
    OUT_OF_RESOURCES = 0xA700
    MOVE_OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # same code, C-STORE meaning
    UNABLE_TO_PROCESS = 0xC000  # C-FIND/C-MOVE/C-GET failure
    CANNOT_UNDERSTAND = 0xC000  # C-STORE: error, cannot understand
    DUPLICATE_REJECTED = 0xC001  # pedipacs: same UID, other content (conformance statement)
    IDENTITY_CONFLICT = 0xC002  # pedipacs: same UID under another study or series
    TRANSCODING_FAILED = 0xC003  # pedipacs: no accepted transfer syntax can be produced
    NOT_AUTHORIZED = 0x0124  # PS3.7 C.5: Refused, not authorized (the peer registry says no)


_STORE_STATUS: _StatusTable[Status] = (
    (PermissionDenied, Status.NOT_AUTHORIZED),
    (StorageUnavailable, Status.OUT_OF_RESOURCES),
    (DecodedSizeTooLargeError, Status.OUT_OF_RESOURCES),  # a deflate bomb
    (DuplicateInstanceRejected, Status.DUPLICATE_REJECTED),
    (InconsistentIdentityError, Status.IDENTITY_CONFLICT),
    (NotDicomError, Status.CANNOT_UNDERSTAND),
    (InvalidInput, Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
)

_QUERY_STATUS: _StatusTable[Status] = (
    (PermissionDenied, Status.NOT_AUTHORIZED),
    (UnknownMoveDestinationError, Status.MOVE_DESTINATION_UNKNOWN),
    (QueryTooBroadError, Status.OUT_OF_RESOURCES),
    (InvalidQueryError, Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidInput, Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (StorageUnavailable, Status.OUT_OF_RESOURCES),
    (TranscodingError, Status.TRANSCODING_FAILED),
)


def store_status_from_error(error: PedipacsError) -> int:
    return int(_status_from(error, _STORE_STATUS, Status.CANNOT_UNDERSTAND))


def query_status_from_error(error: PedipacsError) -> int:
    return int(_status_from(error, _QUERY_STATUS, Status.UNABLE_TO_PROCESS))


# -- MPPS: N-CREATE, N-SET -----------------------------------------------------------------------


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

_MPPS_STATUS: _StatusTable[MppsStatus] = (
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
    """The N-CREATE / N-SET status for `error`.

    >>> mpps_status_from_error(RequiredValueMissingError("Modality has no value", "Modality"))
    <MppsStatus.MISSING_ATTRIBUTE_VALUE: 289>
    >>> mpps_status_from_error(PedipacsError("anything else"))
    <MppsStatus.PROCESSING_FAILURE: 272>
    """
    return _status_from(error, _MPPS_STATUS, MppsStatus.PROCESSING_FAILURE)


# -- Storage Commitment: N-ACTION and the Failure Reasons of its report --------------------------


class CommitmentStatus(IntEnum):
    """N-ACTION statuses (PS3.7 C.4, 10.1.4.1.10) and Failure Reasons (PS3.4 J.3.3.1.1)."""

    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112  # also N-ACTION's "no such SOP Instance"
    INVALID_ARGUMENT_VALUE = 0x0115
    CLASS_INSTANCE_CONFLICT = 0x0119
    MISSING_ATTRIBUTE = 0x0120
    NO_SUCH_ACTION = 0x0123
    NOT_AUTHORIZED = 0x0124
    RESOURCE_LIMITATION = 0x0213


_N_ACTION_STATUS: _StatusTable[CommitmentStatus] = (
    (PermissionDenied, CommitmentStatus.NOT_AUTHORIZED),
    (StorageUnavailable, CommitmentStatus.RESOURCE_LIMITATION),
    (UnsupportedActionTypeError, CommitmentStatus.NO_SUCH_ACTION),
    (NotTheWellKnownInstanceError, CommitmentStatus.NO_SUCH_OBJECT_INSTANCE),
    (MissingAttributeError, CommitmentStatus.MISSING_ATTRIBUTE),
    (InvalidInput, CommitmentStatus.INVALID_ARGUMENT_VALUE),
)

COMMITMENT_FAILURE_REASONS = {
    CommitmentFailureReason.NO_SUCH_OBJECT_INSTANCE: CommitmentStatus.NO_SUCH_OBJECT_INSTANCE,
    CommitmentFailureReason.CLASS_INSTANCE_CONFLICT: CommitmentStatus.CLASS_INSTANCE_CONFLICT,
}


def n_action_status_from_error(error: PedipacsError) -> CommitmentStatus:
    return _status_from(error, _N_ACTION_STATUS, CommitmentStatus.PROCESSING_FAILURE)


# -- what every service shares -------------------------------------------------------------------


def status_class(status: int) -> str:
    """success / pending / warning / failure, for metrics and logs."""
    if status == Status.SUCCESS:
        return "success"
    if status in (Status.PENDING, Status.PENDING_WARNING):
        return "pending"
    if status == Status.CANCEL:
        return "cancel"
    if status in (Status.WARNING_SUBOPERATIONS_FAILED, 0x0001, 0xB007, 0xB006):
        return "warning"
    return "failure"


# Errors whose message is about the peer's own request, and so is fit to send back to it.
_PEER_READABLE: tuple[type[PedipacsError], ...] = (
    InvalidInput,
    PermissionDenied,
    NotFound,
    Conflict,
)
# Our own failures: the message may hold driver text, host names or paths, so the peer reads a
# fixed phrase and the log keeps the message.
_INTERNAL_COMMENT: tuple[tuple[type[PedipacsError], str], ...] = (
    (StorageUnavailable, "archive storage or database unavailable; try later"),
    (TranscodingError, "cannot convert to a transfer syntax the peer accepts"),
)
INTERNAL_FAILURE_COMMENT = "unable to process; see the archive log"


def error_comment(error: PedipacsError) -> str:
    """The Error Comment a peer may read for `error`.

    >>> error_comment(InvalidQueryError("QueryRetrieveLevel 'X' is not valid"))
    "QueryRetrieveLevel 'X' is not valid"
    >>> error_comment(StorageUnavailable("cannot connect: /run/postgresql/.s.PGSQL.5432"))
    'archive storage or database unavailable; try later'
    """
    if isinstance(error, _PEER_READABLE):
        return str(error)
    for error_type, comment in _INTERNAL_COMMENT:
        if isinstance(error, error_type):
            return comment
    return INTERNAL_FAILURE_COMMENT


def status_dataset(status: int, comment: str) -> Dataset:
    """A failure status with an Error Comment (at most 64 characters) the peer can log."""
    dataset = Dataset()
    dataset.Status = status
    dataset.ErrorComment = comment.encode("ascii", "replace").decode()[:64]
    return dataset
