"""The FHIR door's ONE translation of errors: domain errors (and the door's own) to an HTTP
status and an OperationOutcome issue code, answered as `application/fhir+json`.

Every route of the door is a `FhirRoute`, whose handler turns whatever its endpoint raises into
an OperationOutcome: so does a refused permission (`requires` raises in the route's
dependencies) and a malformed parameter FastAPI itself refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fhir.resources.R4B.operationoutcome import OperationOutcome

from pedipacs import errors

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"


class FormatNotSupportedError(errors.InvalidInput):
    """`_format` or `Accept` asks for something else than FHIR JSON (XML is not served)."""


class MethodNotSupportedError(errors.InvalidInput):
    """The door reads and searches; it creates, changes and deletes nothing."""


class UnknownFhirPathError(errors.NotFound):
    """A resource type or an interaction the door does not serve."""


class UnsupportedSearchError(errors.InvalidInput):
    """A search parameter modifier or prefix the door does not implement, or (with
    `Prefer: handling=strict`) a parameter it does not know."""


# Most specific first: the first class the error is an instance of decides.
_OUTCOME: tuple[tuple[type[errors.PedipacsError], int, str], ...] = (
    (FormatNotSupportedError, 406, "not-supported"),
    (MethodNotSupportedError, 405, "not-supported"),
    (UnsupportedSearchError, 400, "not-supported"),
    (errors.InvalidInput, 400, "invalid"),
    (errors.NotFound, 404, "not-found"),
    (errors.Conflict, 409, "conflict"),
    (errors.PermissionDenied, 403, "forbidden"),
    (errors.StorageUnavailable, 503, "transient"),
)
_UNAVAILABLE = "the server cannot answer now; try again later"
_INTERNAL = "internal error; the server log has the details"


def outcome_from_error(error: errors.PedipacsError) -> tuple[int, str, str]:
    """(HTTP status, issue code, diagnostics) of a domain error; our own failures say nothing
    of their cause (it stays in the server log).

    >>> outcome_from_error(errors.NotFound("no Patient/7 that you may see"))
    (404, 'not-found', 'no Patient/7 that you may see')
    >>> outcome_from_error(errors.StorageUnavailable("disk /var/lib/pedipacs full"))[2]
    'the server cannot answer now; try again later'
    """
    for error_type, status, code in _OUTCOME:
        if isinstance(error, error_type):
            if isinstance(error, errors.StorageUnavailable):
                return status, code, _UNAVAILABLE
            return status, code, str(error)
    return 500, "exception", _INTERNAL


def operation_outcome(
    issues: list[tuple[str, str, str]],
) -> OperationOutcome:
    """An OperationOutcome of (severity, code, diagnostics) issues."""
    return OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": severity, "code": code, "diagnostics": diagnostics}
                for severity, code, diagnostics in issues
            ],
        }
    )


def outcome_response(status: int, code: str, diagnostics: str) -> Response:
    severity = "fatal" if status >= 500 else "error"
    outcome = operation_outcome([(severity, code, diagnostics)])
    return Response(
        outcome.model_dump_json(),
        status_code=status,
        media_type=FHIR_JSON,
        headers={"Cache-Control": "no-store"},
    )


def _validation_message(error: RequestValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    )


class FhirRoute(APIRoute):
    """A route whose every failure is answered as an OperationOutcome."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except errors.PedipacsError as error:
                status, code, diagnostics = outcome_from_error(error)
                if status >= 500:
                    log.error("%s %s failed: %s", request.method, request.url.path, error)
                return outcome_response(status, code, diagnostics)
            except RequestValidationError as error:
                return outcome_response(400, "invalid", _validation_message(error))
            except Exception:
                log.exception("%s %s failed unexpectedly", request.method, request.url.path)
                return outcome_response(500, "exception", _INTERNAL)

        return handler
