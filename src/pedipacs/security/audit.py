"""The audit trail, written in the same transaction as the action it records.

Event IDs are those of DICOM PS3.15 A.5 (DCM 1101xx), so an ATNA export can name them directly.
The trail is tamper-evident: each record carries the SHA-256 of its own content and of the
record before it, so a record changed, removed or inserted afterwards breaks the chain, which
`verify_chain` finds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc
from pedipacs.db.engine import Database
from pedipacs.db.tables import AuditChainHead, AuditEvent
from pedipacs.errors import StorageUnavailable
from pedipacs.model.origin import Origin

T = TypeVar("T")
AUDIT_EVENT: Table = AuditEvent.__table__  # type: ignore[assignment]
_INSERT_AUDIT_EVENT = insert(AUDIT_EVENT)
# The `previous_hash` of the first record.
GENESIS_HASH = "0" * 64
CHAIN_HEAD_ID = 1
VERIFY_BATCH = 2000
_LOCK_CHAIN_HEAD = (
    select(AuditChainHead.sequence, AuditChainHead.record_hash)
    .where(AuditChainHead.id == CHAIN_HEAD_ID)
    .with_for_update()
)
# The fields a record's hash covers, in order (the chain fields come first).
HASHED_FIELDS = (
    "at", "event_id", "event_name", "event_action", "outcome", "door", "user", "remote_host",
    "remote_ae", "patient_id", "study_instance_uid", "detail",
)  # fmt: skip


class AuditEventId(Enum):
    """(code, meaning) of the DICOM audit events pedipacs records."""

    APPLICATION_ACTIVITY = ("110100", "Application Activity")
    AUDIT_LOG_USED = ("110101", "Audit Log Used")
    BEGIN_TRANSFERRING = ("110102", "Begin Transferring DICOM Instances")
    INSTANCES_ACCESSED = ("110103", "DICOM Instances Accessed")
    INSTANCES_TRANSFERRED = ("110104", "DICOM Instances Transferred")
    STUDY_DELETED = ("110105", "DICOM Study Deleted")
    EXPORT = ("110106", "Export")
    IMPORT = ("110107", "Import")
    NETWORK_ENTRY = ("110108", "Network Entry")
    ORDER_RECORD = ("110109", "Order Record")
    PATIENT_RECORD = ("110110", "Patient Record")
    PROCEDURE_RECORD = ("110111", "Procedure Record")
    QUERY = ("110112", "Query")
    SECURITY_ALERT = ("110113", "Security Alert")
    USER_AUTHENTICATION = ("110114", "User Authentication")


class AuditOutcome(int, Enum):
    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited action; extend with fields, never positional arguments."""

    event: AuditEventId
    action: str  # C create, R read, U update, D delete, E execute
    origin: Origin
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    patient_id: str | None = None
    study_instance_uid: str | None = None
    detail: str | None = None


def record(session: Session, entry: AuditRecord) -> None:
    """Add the audit row to the caller's transaction; it commits (or not) with the action.

    The chain head is locked (PostgreSQL: `FOR UPDATE`; SQLite: the one writer) until the
    transaction ends, so concurrent transactions append one after the other.
    """
    code, meaning = entry.event.value
    values: dict[str, Any] = dict(
        at=datetime.now(UTC),
        event_id=code,
        event_name=meaning,
        event_action=entry.action,
        outcome=int(entry.outcome),
        door=str(entry.origin.door),
        user=entry.origin.user,
        remote_host=entry.origin.remote_host,
        remote_ae=entry.origin.remote_ae,
        patient_id=entry.patient_id,
        study_instance_uid=entry.study_instance_uid,
        detail=(entry.detail or "")[:4000] or None,
    )
    connection = session.connection()
    head = connection.execute(_LOCK_CHAIN_HEAD).one()
    sequence = head.sequence + 1
    record_hash = chain_hash(head.record_hash, sequence, values)
    connection.execute(
        _INSERT_AUDIT_EVENT,
        {**values, "sequence": sequence, "previous_hash": head.record_hash,
         "record_hash": record_hash},
    )  # fmt: skip
    connection.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(sequence=sequence, record_hash=record_hash)
    )


def record_query(session: Session, origin: Origin, patient_ids: Iterable[str], detail: str) -> None:
    """A list shown to a person, audited as a query (110112): it names its patient when every
    entry shown is that one patient's, and none when it shows several (or nothing)."""
    shown = set(patient_ids)
    record(
        session,
        AuditRecord(
            AuditEventId.QUERY,
            "E",
            origin,
            patient_id=shown.pop() if len(shown) == 1 else None,
            detail=detail,
        ),
    )


def audited_read(
    database: Database,
    read: Callable[[Session], T],
    audit: Callable[[Session, T], None],
) -> T:
    """Read in a read-only transaction, then put the look on the audit trail in a short write
    transaction of its own. The result is returned only once its record is committed (no
    unrecorded look at patient data), and the one SQLite writer is held for the record only,
    not for the read (as the archive's C-FIND and QIDO-RS do)."""
    with database.reading() as session:
        result = read(session)
    try:
        with database.unit_of_work() as session:
            audit(session, result)
    except OperationalError as error:
        raise StorageUnavailable(f"the audit trail cannot be written: {error.orig}") from error
    return result


def chain_hash(previous_hash: str, sequence: int, values: Mapping[str, Any]) -> str:
    """SHA-256 over the previous record's hash, the position and the record's fields.

    >>> chain_hash(GENESIS_HASH, 1, {"at": datetime(2026, 1, 1, tzinfo=UTC)})[:16]
    'cf3e98baf9c6fe47'
    """
    content = [previous_hash, sequence, *(_canonical(values.get(f)) for f in HASHED_FIELDS)]
    encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite gives back naive UTC, PostgreSQL aware: one text for both.
        return aware_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a verification found: how far the chain holds, and the first break if any."""

    records_checked: int
    broken_at: int | None = None  # the sequence number of the first bad record
    reason: str | None = None

    @property
    def is_intact(self) -> bool:
        return self.broken_at is None


def verify_chain(rows: Iterator[Any], head: tuple[int, str] | None) -> ChainReport:
    """Walk the records in sequence order and recompute every link.

    `rows` yields records with the columns of `audit_event`; `head` is the chain head (its
    sequence and hash), which catches records removed from the end.
    """
    expected_previous, expected_sequence, checked = GENESIS_HASH, 1, 0
    for row in rows:
        values = row._mapping
        problem = _link_problem(values, expected_sequence, expected_previous)
        if problem is not None:
            return ChainReport(checked, expected_sequence, problem)
        expected_previous = values["record_hash"]
        expected_sequence += 1
        checked += 1
    last = (expected_sequence - 1, expected_previous)
    if head is not None and tuple(head) != last:
        return ChainReport(
            checked, last[0] + 1, f"the chain head says {head[0]} records; {last[0]} are there"
        )
    return ChainReport(checked)


def _link_problem(values: Mapping[str, Any], sequence: int, previous: str) -> str | None:
    if values["sequence"] != sequence:
        return f"record {sequence} is missing (the next one found is {values['sequence']})"
    if values["previous_hash"] != previous:
        return "its link to the previous record does not match (a record before it changed)"
    if chain_hash(previous, sequence, values) != values["record_hash"]:
        return "its content does not match its hash (the record was changed)"
    return None


@dataclass(frozen=True, slots=True)
class AuditSearch:
    """What an auditor looks for; every field narrows the search."""

    user: str | None = None
    patient_id: str | None = None
    study_instance_uid: str | None = None
    event_id: str | None = None
    failures_only: bool = False
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200
    before_sequence: int | None = None  # paging: records older than this one

    def described(self) -> str:
        given = {k: v for k, v in (
            ("user", self.user), ("patient", self.patient_id), ("study", self.study_instance_uid),
            ("event", self.event_id), ("since", self.since), ("until", self.until),
        ) if v}  # fmt: skip
        parts = [f"{k}={v}" for k, v in given.items()] + (
            ["failures"] if self.failures_only else []
        )
        return "audit search: " + (", ".join(parts) or "everything")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    sequence: int
    at: datetime
    event_id: str
    event_name: str
    action: str
    outcome: int
    door: str
    user: str | None
    remote_host: str | None
    remote_ae: str | None
    patient_id: str | None
    study_instance_uid: str | None
    detail: str | None


MAX_SEARCH_RESULTS = 1000


class AuditTrail:
    """Reading the audit trail back: an auditor's search, and verification of the chain."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def search(self, criteria: AuditSearch, origin: Origin) -> list[AuditEntry]:
        """The newest records matching `criteria`; the search itself is audited (110101)."""
        columns = AUDIT_EVENT.c
        statement = select(AUDIT_EVENT).order_by(columns.sequence.desc())
        for column, value in (
            (columns.user, criteria.user),
            (columns.patient_id, criteria.patient_id),
            (columns.study_instance_uid, criteria.study_instance_uid),
            (columns.event_id, criteria.event_id),
        ):
            if value:
                statement = statement.where(column == value)
        if criteria.failures_only:
            statement = statement.where(columns.outcome != int(AuditOutcome.SUCCESS))
        if criteria.since is not None:
            statement = statement.where(columns.at >= criteria.since)
        if criteria.until is not None:
            statement = statement.where(columns.at < criteria.until)
        if criteria.before_sequence is not None:
            statement = statement.where(columns.sequence < criteria.before_sequence)
        statement = statement.limit(max(1, min(criteria.limit, MAX_SEARCH_RESULTS)))
        with self._database.unit_of_work() as session:
            # Recorded in the same transaction as the read: no unrecorded look at the trail.
            record(
                session,
                AuditRecord(
                    AuditEventId.AUDIT_LOG_USED, "R", origin,
                    patient_id=criteria.patient_id, detail=criteria.described(),
                ),
            )  # fmt: skip
            rows = session.execute(statement).all()
        return [
            AuditEntry(
                sequence=row.sequence,
                at=aware_utc(row.at),
                event_id=row.event_id,
                event_name=row.event_name,
                action=row.event_action,
                outcome=row.outcome,
                door=row.door,
                user=row.user,
                remote_host=row.remote_host,
                remote_ae=row.remote_ae,
                patient_id=row.patient_id,
                study_instance_uid=row.study_instance_uid,
                detail=row.detail,
            )
            for row in rows
        ]

    def verify(self, origin: Origin) -> ChainReport:
        """Check every record's link and hash; the check itself is audited (Audit Log Used)."""
        with self._database.reading() as session:
            head = session.execute(
                select(AuditChainHead.sequence, AuditChainHead.record_hash).where(
                    AuditChainHead.id == CHAIN_HEAD_ID
                )
            ).one_or_none()
            rows = session.execute(
                select(AUDIT_EVENT)
                .order_by(AUDIT_EVENT.c.sequence)
                .execution_options(yield_per=VERIFY_BATCH)
            )
            last = (int(head.sequence), str(head.record_hash)) if head is not None else None
            report = verify_chain(iter(rows), last)
        outcome = AuditOutcome.SUCCESS if report.is_intact else AuditOutcome.SERIOUS_FAILURE
        detail = f"chain verified: {report.records_checked} records"
        if not report.is_intact:
            detail += f"; broken at {report.broken_at}: {report.reason}"
        with self._database.unit_of_work() as session:
            record(
                session,
                AuditRecord(
                    AuditEventId.AUDIT_LOG_USED, "E", origin, outcome=outcome, detail=detail
                ),
            )
        return report
