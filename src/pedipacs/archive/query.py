"""QueryService: run a `model.Query` through the one SQL compiler and audit the access."""

from __future__ import annotations

import time
from collections.abc import Iterator

from sqlalchemy.exc import OperationalError

from pedipacs import metrics
from pedipacs.db.engine import Database
from pedipacs.db.query_sql import compile_query, returned_keywords, values_from_row
from pedipacs.errors import StorageUnavailable
from pedipacs.model.origin import Origin
from pedipacs.model.query import Query
from pedipacs.model.records import QueryMatch
from pedipacs.security.audit import AuditEventId, AuditRecord, record

FETCH_BATCH = 500


class QueryService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def find(self, query: Query, origin: Origin) -> Iterator[QueryMatch]:
        """Yield the matches of `query`, in a stable order.

        The query is compiled (and so validated) before the first match is produced, and the
        access is audited before any patient data leaves the service.
        """
        statement = compile_query(query)
        keywords = returned_keywords(query)
        try:
            self._audit(query, origin)
        except OperationalError as error:
            # No audit record, no access: patient data leaves only when the access is on record.
            raise StorageUnavailable(f"the audit trail cannot be written: {error.orig}") from error
        started = time.perf_counter()
        try:
            with self._database.reading() as session:
                result = session.execute(statement.execution_options(yield_per=FETCH_BATCH))
                for row in result:
                    yield QueryMatch(values_from_row(row, keywords))
        except OperationalError as error:
            raise StorageUnavailable(f"the index database cannot be read: {error.orig}") from error
        finally:
            metrics.QUERY_SECONDS.labels(str(query.level)).observe(time.perf_counter() - started)

    def _audit(self, query: Query, origin: Origin) -> None:
        patient_ids = [
            km.match.value
            for km in query.constraints
            if km.keyword == "PatientID" and hasattr(km.match, "value")
        ]
        summary = ", ".join(f"{km.keyword}={km.match}" for km in query.constraints)
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    event=AuditEventId.QUERY,
                    action="E",
                    origin=origin,
                    patient_id=patient_ids[0] if patient_ids else None,
                    detail=f"{query.information_model} {query.level}: {summary}"[:4000],
                ),
            )
