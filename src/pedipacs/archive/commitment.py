"""Storage Commitment (PS3.4 Annex J, push model), without the protocol: a peer asks pedipacs to
take responsibility for instances it sent; pedipacs answers later, once per request, with the
instances it holds and those it does not.

A request is a durable job (`commitment_request`), written before the peer is told it was
accepted, so an acknowledged request survives a crash. A worker (`dimse/commitment.py`) hands
each due job to a `deliver` function; the outcome is computed at that moment, so instances that
arrived after the request but before the report count as committed. A report that cannot be
delivered is retried with exponential back-off until `max_attempts`, then marked failed.

An instance is committed when it is in the index with the SOP Class the peer named: the index
row is committed only after its bytes are on stable storage (see `archive/ingest.py`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import CommitmentRequest, Instance, Patient, PeerRow, Series, Study
from pedipacs.errors import (
    MissingAttributeError,
    PedipacsError,
    PermissionDenied,
    StorageUnavailable,
)
from pedipacs.model.identifiers import validated_uid
from pedipacs.model.origin import Door, Origin
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record

JOB_NAME = "storage-commitment"
MAX_RETRY_DELAY = timedelta(minutes=10)
# SQLite and PostgreSQL both take this many bound parameters in one IN list comfortably.
LOOKUP_CHUNK = 500


class CommitmentState(StrEnum):
    PENDING = "pending"  # the report is still to be delivered
    REPORTED = "reported"  # the peer acknowledged the report
    FAILED = "failed"  # given up after max_attempts


class CommitmentFailureReason(StrEnum):
    """Why an instance is not committed (PS3.4 J.3.3.1.1, Failure Reason)."""

    NO_SUCH_OBJECT_INSTANCE = "no such object instance"
    CLASS_INSTANCE_CONFLICT = "class-instance conflict"  # stored with another SOP Class


class UnknownCommitmentRequesterError(PermissionDenied):
    """The requesting AE is not in the peer registry with a host and port: no report could
    ever reach it, so its request is refused rather than accepted and never answered."""


class CommitmentReportNotDeliveredError(PedipacsError):
    """The report could not be delivered (no association, refused, no or a failed answer)."""


@dataclass(frozen=True, slots=True)
class SopReference:
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class FailedReference:
    reference: SopReference
    reason: CommitmentFailureReason


@dataclass(frozen=True, slots=True)
class CommitmentResult:
    """What pedipacs commits to, in the order the peer listed the instances."""

    committed: tuple[SopReference, ...]
    failed: tuple[FailedReference, ...]
    # Of the committed instances, for the audit trail.
    patient_ids: frozenset[str] = frozenset()
    study_instance_uids: frozenset[str] = frozenset()

    @property
    def is_complete(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class CommitmentJob:
    id: int
    transaction_uid: str
    requester_ae_title: str
    references: tuple[SopReference, ...]
    state: CommitmentState
    attempts: int
    due_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class CommitmentReport:
    """One delivery attempt: where to send which result."""

    job_id: int
    transaction_uid: str
    requester_ae_title: str
    host: str
    port: int
    attempt: int  # 1 for the first
    result: CommitmentResult


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What became of one attempt, for the worker's log."""

    job_id: int
    transaction_uid: str
    requester_ae_title: str
    state: CommitmentState
    attempts: int
    result: CommitmentResult | None  # None when no report could be built
    error: str | None = None
    next_attempt_in: timedelta | None = None  # set while it stays pending


Deliver = Callable[[CommitmentReport], None]


def retry_delay(failed_attempts: int, first: timedelta) -> timedelta:
    """How long to wait after the n-th failed attempt: `first`, doubling, at most 10 minutes.

    >>> [retry_delay(n, timedelta(seconds=5)).seconds for n in (1, 2, 3, 8, 30)]
    [5, 10, 20, 600, 600]
    """
    delay: timedelta = first * 2 ** min(max(failed_attempts - 1, 0), 20)
    return min(delay, MAX_RETRY_DELAY)


class CommitmentService:
    def __init__(
        self, database: Database, *, retry_seconds: float = 5.0, max_attempts: int = 30
    ) -> None:
        self._database = database
        self._first_retry = timedelta(seconds=retry_seconds)
        self._max_attempts = max_attempts
        # Wakes this process's worker when a request is stored here (a request stored by
        # another process is found by the worker's poll).
        self._requested = threading.Event()

    # -- the door's side --

    def request(
        self,
        transaction_uid: str,
        requester_ae: str,
        references: Iterable[tuple[str, str]],
        origin: Origin,
    ) -> CommitmentJob:
        """Store a request (N-ACTION) as a pending job, audited; return once it is committed.

        `references` are (SOP Class UID, SOP Instance UID) pairs. Every request gets its own
        report, even one repeating a Transaction UID (a peer that lost our answer asks again).
        """
        uid = validated_uid(transaction_uid, "TransactionUID")
        wanted = tuple(
            SopReference(
                validated_uid(class_uid, "ReferencedSOPClassUID"),
                validated_uid(instance_uid, "ReferencedSOPInstanceUID"),
            )
            for class_uid, instance_uid in references
        )
        if not wanted:
            raise MissingAttributeError("ReferencedSOPSequence has no items")
        ae_title = requester_ae.strip()

        def store(session: Session) -> CommitmentJob:
            peer = session.scalar(select(PeerRow).where(PeerRow.ae_title == ae_title))
            if peer is None or not peer.host.strip() or not 0 < peer.port < 65536:
                raise UnknownCommitmentRequesterError(
                    f"{ae_title} is not a registered peer with a host and port, so no storage "
                    "commitment report could reach it (see `pedipacs peer add`)"
                )
            row = CommitmentRequest(
                transaction_uid=uid,
                requester_ae_title=ae_title,
                references=_references_text(wanted),
                state=CommitmentState.PENDING,
                attempts=0,
                due_at=utc_now(),
            )
            session.add(row)
            session.flush()
            record(
                session,
                AuditRecord(
                    AuditEventId.INSTANCES_TRANSFERRED,
                    "E",
                    origin,
                    detail=f"storage commitment requested: transaction {uid}, "
                    f"{len(wanted)} instance(s)",
                ),
            )
            return _job(row)

        try:
            job = self._database.transaction(store)
        except OperationalError as error:
            raise StorageUnavailable(
                f"the index database cannot be written: {error.orig}"
            ) from error
        self._requested.set()
        return job

    # -- the answer --

    def committed(self, references: Sequence[SopReference]) -> CommitmentResult:
        """Which of `references` pedipacs holds now, and why the others fail."""
        with self._database.reading() as session:
            return _result(session, references)

    # -- the worker's side --

    def due_jobs(self, limit: int = 20, *, now: datetime | None = None) -> list[CommitmentJob]:
        """Pending jobs whose next attempt is due, oldest due first."""
        moment = now or utc_now()
        with self._database.reading() as session:
            rows = session.scalars(
                select(CommitmentRequest)
                .where(
                    CommitmentRequest.state == CommitmentState.PENDING,
                    CommitmentRequest.due_at <= moment,
                )
                .order_by(CommitmentRequest.due_at, CommitmentRequest.id)
                .limit(limit)
            )
            return [_job(row) for row in rows]

    def process_due(
        self, deliver: Deliver, *, limit: int = 20, now: datetime | None = None
    ) -> list[DeliveryOutcome]:
        """Give each due job's report to `deliver` and record what happened.

        `deliver` raises CommitmentReportNotDeliveredError when the peer did not acknowledge
        the report. On PostgreSQL each job is locked while it is delivered (`FOR UPDATE SKIP
        LOCKED`), so several nodes never send the same report at once, and a node that dies
        mid-delivery leaves the job pending. On SQLite (one node, one worker) the job is read,
        delivered, then updated: the database's one writer is never held over the network.
        """
        outcomes = []
        for job in self.due_jobs(limit, now=now):
            if self._database.is_sqlite:
                outcome = self._attempt_unlocked(job.id, deliver, now)
            else:
                outcome = self._attempt_locked(job.id, deliver, now)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def wait_for_request(self, timeout: float) -> bool:
        """Wait until a request is stored in this process (or `wake`), at most `timeout`
        seconds; True if woken."""
        woken = self._requested.wait(timeout)
        self._requested.clear()
        return woken

    def wake(self) -> None:
        self._requested.set()

    # -- one attempt --

    def _attempt_locked(
        self, job_id: int, deliver: Deliver, now: datetime | None
    ) -> DeliveryOutcome | None:
        with self._database.unit_of_work() as session:
            row = session.scalar(
                select(CommitmentRequest)
                .where(
                    CommitmentRequest.id == job_id,
                    CommitmentRequest.state == CommitmentState.PENDING,
                    CommitmentRequest.due_at <= (now or utc_now()),
                )
                .with_for_update(skip_locked=True)
            )
            if row is None:  # another node is delivering it, or has already
                return None
            report, error = _report(session, row)
            if report is not None:
                error = _delivered(deliver, report)
            # Audit only now: recording locks the audit chain head until the commit, which
            # must never wait on a peer.
            return self._record(session, row, report, error, now)

    def _attempt_unlocked(
        self, job_id: int, deliver: Deliver, now: datetime | None
    ) -> DeliveryOutcome | None:
        with self._database.reading() as session:
            row = session.get(CommitmentRequest, job_id)
            if row is None or row.state != CommitmentState.PENDING:
                return None
            report, error = _report(session, row)
        if report is not None:
            error = _delivered(deliver, report)
        with self._database.unit_of_work() as session:
            row = session.get(CommitmentRequest, job_id)
            if row is None or row.state != CommitmentState.PENDING:
                return None
            return self._record(session, row, report, error, now)

    def _record(
        self,
        session: Session,
        row: CommitmentRequest,
        report: CommitmentReport | None,
        error: str | None,
        now: datetime | None,
    ) -> DeliveryOutcome:
        moment = now or utc_now()
        row.attempts += 1
        origin = Origin(
            Door.JOB,
            user=JOB_NAME,
            remote_ae=row.requester_ae_title,
            remote_host=report.host if report else None,
        )
        result = report.result if report else None
        if error is None and result is not None:
            row.state = CommitmentState.REPORTED
            row.reported_at = moment
            row.last_error = None
            record(session, _report_audit(origin, row, result))
            return _outcome(row, result)
        row.last_error = (error or "not delivered")[:4000]
        if row.attempts >= self._max_attempts:
            row.state = CommitmentState.FAILED
            record(
                session,
                AuditRecord(
                    AuditEventId.INSTANCES_TRANSFERRED,
                    "R",
                    origin,
                    outcome=AuditOutcome.SERIOUS_FAILURE,
                    detail=f"storage commitment report for transaction {row.transaction_uid} "
                    f"given up after {row.attempts} attempts: {row.last_error}",
                ),
            )
            return _outcome(row, result, error=row.last_error)
        delay = retry_delay(row.attempts, self._first_retry)
        row.due_at = moment + delay
        return _outcome(row, result, error=row.last_error, next_attempt_in=delay)


# -- helpers working in the caller's session --------------------------------------------------


def _references_text(references: Sequence[SopReference]) -> str:
    return json.dumps([[ref.sop_class_uid, ref.sop_instance_uid] for ref in references])


def _references(text: str) -> tuple[SopReference, ...]:
    return tuple(SopReference(str(pair[0]), str(pair[1])) for pair in json.loads(text))


def _job(row: CommitmentRequest) -> CommitmentJob:
    due_at = aware_utc(row.due_at)
    return CommitmentJob(
        id=row.id,
        transaction_uid=row.transaction_uid,
        requester_ae_title=row.requester_ae_title,
        references=_references(row.references),
        state=CommitmentState(row.state),
        attempts=row.attempts,
        due_at=due_at,
        last_error=row.last_error,
    )


def _result(session: Session, references: Sequence[SopReference]) -> CommitmentResult:
    wanted = sorted({ref.sop_instance_uid for ref in references})
    stored: dict[str, tuple[str, str, str]] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        rows = session.execute(
            select(
                Instance.sop_instance_uid,
                Instance.sop_class_uid,
                Patient.patient_id,
                Study.study_instance_uid,
            )
            .join(Series, Series.id == Instance.series_fk)
            .join(Study, Study.id == Series.study_fk)
            .join(Patient, Patient.id == Study.patient_fk)
            .where(Instance.sop_instance_uid.in_(wanted[start : start + LOOKUP_CHUNK]))
        )
        for instance_uid, class_uid, patient_id, study_uid in rows:
            stored[instance_uid] = (class_uid, patient_id, study_uid)
    committed: list[SopReference] = []
    failed: list[FailedReference] = []
    patients: set[str] = set()
    studies: set[str] = set()
    for ref in references:
        found = stored.get(ref.sop_instance_uid)
        if found is None:
            failed.append(FailedReference(ref, CommitmentFailureReason.NO_SUCH_OBJECT_INSTANCE))
        elif found[0] != ref.sop_class_uid:
            failed.append(FailedReference(ref, CommitmentFailureReason.CLASS_INSTANCE_CONFLICT))
        else:
            committed.append(ref)
            patients.add(found[1])
            studies.add(found[2])
    return CommitmentResult(
        tuple(committed), tuple(failed), frozenset(patients), frozenset(studies)
    )


def _report(session: Session, row: CommitmentRequest) -> tuple[CommitmentReport | None, str | None]:
    """The report to deliver now, or why there is none (the peer left the registry)."""
    peer = session.scalar(select(PeerRow).where(PeerRow.ae_title == row.requester_ae_title))
    if peer is None or not peer.host.strip() or not 0 < peer.port < 65536:
        return None, f"{row.requester_ae_title} is no longer a registered peer with host and port"
    report = CommitmentReport(
        job_id=row.id,
        transaction_uid=row.transaction_uid,
        requester_ae_title=row.requester_ae_title,
        host=peer.host.strip(),
        port=peer.port,
        attempt=row.attempts + 1,
        result=_result(session, _references(row.references)),
    )
    return report, None


def _delivered(deliver: Deliver, report: CommitmentReport) -> str | None:
    """None when delivered, else why not."""
    try:
        deliver(report)
    except CommitmentReportNotDeliveredError as error:
        return str(error) or type(error).__name__
    return None


def _only(values: frozenset[str]) -> str | None:
    return next(iter(values)) if len(values) == 1 else None


def _report_audit(origin: Origin, row: CommitmentRequest, result: CommitmentResult) -> AuditRecord:
    return AuditRecord(
        AuditEventId.INSTANCES_TRANSFERRED,
        "R",
        origin,
        outcome=AuditOutcome.SUCCESS if result.is_complete else AuditOutcome.MINOR_FAILURE,
        patient_id=_only(result.patient_ids),
        study_instance_uid=_only(result.study_instance_uids),
        detail=f"storage commitment reported: transaction {row.transaction_uid}, "
        f"{len(result.committed)} committed, {len(result.failed)} failed",
    )


def _outcome(
    row: CommitmentRequest,
    result: CommitmentResult | None,
    *,
    error: str | None = None,
    next_attempt_in: timedelta | None = None,
) -> DeliveryOutcome:
    return DeliveryOutcome(
        job_id=row.id,
        transaction_uid=row.transaction_uid,
        requester_ae_title=row.requester_ae_title,
        state=CommitmentState(row.state),
        attempts=row.attempts,
        result=result,
        error=error,
        next_attempt_in=next_attempt_in,
    )
