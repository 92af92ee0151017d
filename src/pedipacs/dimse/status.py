"""The ONE table from domain errors to DIMSE status codes (PS3.4 Annexes B and C, PS3.7 C)."""

from __future__ import annotations

from enum import IntEnum

from pydicom.dataset import Dataset

from pedipacs.errors import (
    Conflict,
    DecodedSizeTooLargeError,
    DuplicateInstanceRejected,
    InconsistentIdentityError,
    InvalidInput,
    InvalidQueryError,
    NotDicomError,
    NotFound,
    PedipacsError,
    PermissionDenied,
    QueryTooBroadError,
    StorageUnavailable,
    TranscodingError,
    UnknownMoveDestinationError,
)


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


# Most specific first: the first matching class wins.
_STORE_STATUS: tuple[tuple[type[PedipacsError], Status], ...] = (
    (PermissionDenied, Status.NOT_AUTHORIZED),
    (StorageUnavailable, Status.OUT_OF_RESOURCES),
    (DecodedSizeTooLargeError, Status.OUT_OF_RESOURCES),  # a deflate bomb
    (DuplicateInstanceRejected, Status.DUPLICATE_REJECTED),
    (InconsistentIdentityError, Status.IDENTITY_CONFLICT),
    (NotDicomError, Status.CANNOT_UNDERSTAND),
    (InvalidInput, Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
)

_QUERY_STATUS: tuple[tuple[type[PedipacsError], Status], ...] = (
    (PermissionDenied, Status.NOT_AUTHORIZED),
    (UnknownMoveDestinationError, Status.MOVE_DESTINATION_UNKNOWN),
    (QueryTooBroadError, Status.OUT_OF_RESOURCES),
    (InvalidQueryError, Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidInput, Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (StorageUnavailable, Status.OUT_OF_RESOURCES),
    (TranscodingError, Status.TRANSCODING_FAILED),
)


def store_status_from_error(error: PedipacsError) -> int:
    for error_type, status in _STORE_STATUS:
        if isinstance(error, error_type):
            return int(status)
    return int(Status.CANNOT_UNDERSTAND)


def query_status_from_error(error: PedipacsError) -> int:
    for error_type, status in _QUERY_STATUS:
        if isinstance(error, error_type):
            return int(status)
    return int(Status.UNABLE_TO_PROCESS)


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
