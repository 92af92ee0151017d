"""QueryService: run a `model.Query` through the one SQL compiler and audit the access."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select
from sqlalchemy.exc import OperationalError

from pedipacs import metrics
from pedipacs.db.engine import Database
from pedipacs.db.query_sql import Projection, compile_query, match_from_row, projection_for
from pedipacs.errors import QueryTooBroadError, StorageUnavailable
from pedipacs.model.origin import Origin
from pedipacs.model.query import KeyMatch, Query, SequenceMatch, SingleValue, UidList, Universal
from pedipacs.model.records import QueryMatch
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record

FETCH_BATCH = 500
DEFAULT_MAX_RESULTS = 1000
# A query naming its studies, series or instances by UID is as narrow as a caller can make it:
# an image-level query of one large series may rightly exceed the limit, and is not capped.
_UNIQUE_KEYWORDS = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"})


class QueryService:
    def __init__(self, database: Database, *, max_results: int = DEFAULT_MAX_RESULTS) -> None:
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        self._database = database
        self._max_results = max_results

    @property
    def max_results(self) -> int:
        """Most matches one answer holds: the page size of callers that page (QIDO-RS)."""
        return self._max_results

    def find(self, query: Query, origin: Origin) -> Iterator[QueryMatch]:
        """Yield the matches of `query`, in a stable order.

        The query is compiled (and so validated) before the first match is produced, and the
        access is audited before any patient data leaves the service.

        Breadth is limited. A caller that pages gives the query a `limit`. A query without one
        (C-FIND cannot page) that matches more than `max_results` entities is refused with
        `QueryTooBroadError` before any match is produced, and the refusal is audited; it costs
        one read of at most `max_results + 1` rows, never a count of every match. Queries that
        name their entities by UID are exempt.
        """
        is_capped = query.limit is None and not _names_entities_by_uid(query)
        bounded = dataclasses.replace(query, limit=self._max_results + 1) if is_capped else query
        statement = compile_query(bounded, origin.patient_scope)
        projection = projection_for(query)
        started = time.perf_counter()
        try:
            if not is_capped:
                self._audit(query, origin)
                yield from self._stream(statement, projection)
                return
            matches = list(self._stream(statement, projection))
            if len(matches) > self._max_results:
                # Refused rather than cut short: a truncated list that looks complete could hide
                # a prior study; nothing is disclosed for a question that cannot be answered.
                limit = self._max_results
                self._audit(query, origin, refusal=f"refused: more than {limit} matches")
                raise QueryTooBroadError(f"more than {limit} matches; narrow the query")
            self._audit(query, origin)
            yield from matches
        finally:
            metrics.QUERY_SECONDS.labels(str(query.level)).observe(time.perf_counter() - started)

    def _stream(self, statement: Select[Any], projection: Projection) -> Iterator[QueryMatch]:
        try:
            with self._database.reading() as session:
                result = session.execute(statement.execution_options(yield_per=FETCH_BATCH))
                for row in result:
                    yield match_from_row(row, projection)
        except OperationalError as error:
            raise StorageUnavailable(f"the index database cannot be read: {error.orig}") from error

    def _audit(self, query: Query, origin: Origin, *, refusal: str | None = None) -> None:
        patient_ids = [
            km.match.value
            for km in query.constraints
            if km.keyword == "PatientID" and hasattr(km.match, "value")
        ]
        summary = ", ".join(_constraints(query.constraints))
        detail = f"{query.information_model} {query.level}: {summary}"
        if refusal is not None:
            detail = f"{refusal}; {detail}"
        outcome = AuditOutcome.SUCCESS if refusal is None else AuditOutcome.MINOR_FAILURE
        try:
            with self._database.unit_of_work() as session:
                record(
                    session,
                    AuditRecord(
                        event=AuditEventId.QUERY,
                        action="E",
                        origin=origin,
                        outcome=outcome,
                        patient_id=patient_ids[0] if patient_ids else None,
                        detail=detail[:4000],
                    ),
                )
        except OperationalError as error:
            # No audit record, no access: patient data leaves only when the access is on record.
            raise StorageUnavailable(f"the audit trail cannot be written: {error.orig}") from error


def _constraints(key_matches: tuple[KeyMatch, ...], prefix: str = "") -> Iterator[str]:
    """`keyword=match` of each key that narrows the query; a sequence's keys by their path
    (`ScheduledProcedureStepSequence.Modality=SingleValue(value='US')`)."""
    for km in key_matches:
        if isinstance(km.match, SequenceMatch):
            yield from _constraints(km.match.items, f"{prefix}{km.keyword}.")
        elif not isinstance(km.match, Universal):
            yield f"{prefix}{km.keyword}={km.match}"


def _names_entities_by_uid(query: Query) -> bool:
    return any(
        km.keyword in _UNIQUE_KEYWORDS and isinstance(km.match, SingleValue | UidList)
        for km in query.key_matches
    )
