"""The ONE translation from domain errors to HTTP statuses and STOW-RS failure reasons."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pedipacs import errors
from pedipacs.dicomweb.media import NotAcceptableError, UnsupportedMediaTypeError
from pedipacs.dicomweb.multipart import MalformedMultipartError

log = logging.getLogger(__name__)

# Most specific first: the first class the error is an instance of decides.
_HTTP_STATUS: tuple[tuple[type[errors.PedipacsError], int], ...] = (
    (NotAcceptableError, 406),
    (errors.TranscodingError, 406),
    (errors.ObjectTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (MalformedMultipartError, 400),
    (errors.InvalidInput, 400),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PermissionDenied, 403),
    (errors.StorageUnavailable, 503),
)

# STOW-RS FailureReason (0008,1197): the C-STORE failure codes of PS3.4 Annex B / PS3.18 10.5.
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
# Not of the study named in the request URL (dcm4chee's code for the same rule).
STUDY_INSTANCE_UID_MISMATCH = 0xC409

_FAILURE_REASON: tuple[tuple[type[errors.PedipacsError], int], ...] = (
    (errors.ObjectTooLargeError, OUT_OF_RESOURCES),
    (errors.DecodedSizeTooLargeError, OUT_OF_RESOURCES),
    (errors.StudyMismatchError, STUDY_INSTANCE_UID_MISMATCH),
    (errors.NotDicomError, CANNOT_UNDERSTAND),
    (errors.MissingAttributeError, DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
    (errors.InvalidUidError, DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
    (errors.InconsistentIdentityError, DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
    (errors.DuplicateInstanceRejected, DUPLICATE_SOP_INSTANCE),
    (errors.InvalidInput, CANNOT_UNDERSTAND),
    (errors.StorageUnavailable, OUT_OF_RESOURCES),
)


def http_status_from_error(error: errors.PedipacsError) -> int:
    for error_type, status in _HTTP_STATUS:
        if isinstance(error, error_type):
            return status
    return 500


# What a client reads for our own failures: their messages may hold database driver text, host
# names or file paths, which stay in the server log.
_UNAVAILABLE_DETAIL = "the archive cannot serve this request now; try again later"
INTERNAL_ERROR_DETAIL = "internal error; the server log has the details"


def public_message(error: errors.PedipacsError) -> str:
    """The reason a client may read: its own mistake in full, our failures as a fixed phrase.

    >>> public_message(errors.InvalidQueryError("limit must be at least 1"))
    'limit must be at least 1'
    >>> public_message(errors.StorageUnavailable("cannot read: /var/lib/pedipacs/index.db"))
    'the archive cannot serve this request now; try again later'
    """
    if isinstance(error, errors.StorageUnavailable):
        return _UNAVAILABLE_DETAIL
    if http_status_from_error(error) >= 500:
        return INTERNAL_ERROR_DETAIL
    return str(error)


def failure_reason_from_error(error: errors.PedipacsError) -> int:
    for error_type, reason in _FAILURE_REASON:
        if isinstance(error, error_type):
            return reason
    return PROCESSING_FAILURE


def install_error_handlers(app: FastAPI) -> None:
    """Every domain error becomes its HTTP status with the reason in the body; any other
    exception a 500 whose body says nothing of it (the traceback goes to the log)."""

    async def domain_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, errors.PedipacsError)
        status = http_status_from_error(error)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": public_message(error)}, status_code=status)

    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, so the server logs it as well.
        log.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": INTERNAL_ERROR_DETAIL}, status_code=500)

    async def invalid_request(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"detail": problems}, status_code=400)

    app.add_exception_handler(errors.PedipacsError, domain_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected_error)
