"""The durable job queue: background work as rows of the `job` table.

A service enqueues a job in the same transaction as the change that causes it (a signed report
and the ORU^R01 that announces it commit together, or neither does). Workers on any node lease
due jobs: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two workers never take the same job;
on SQLite inside the one writer's transaction. A leased job's attempt is counted when it is
taken, so a worker that dies mid-job still uses one up, and its lease runs out so another worker
takes the job again. A failure puts the job back with an exponential, jittered delay until its
attempts are used up; then it is failed and waits for an administrator (`retry`).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, event, func, or_, select, update
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import Job
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.model.origin import Origin

MAX_ERROR_TEXT = 2000
LIST_LIMIT = 500


class JobState(StrEnum):
    PENDING = "pending"  # waiting for its due time or a worker
    RUNNING = "running"  # leased by a worker
    DONE = "done"
    FAILED = "failed"  # attempts used up, or refused for good; an administrator may retry


class UnknownJobError(NotFound):
    """No job has that number."""


class JobNotFailedError(Conflict):
    """Only a failed job can be retried by hand; a pending or running one is on its way."""


class RetryLater(Exception):  # an outcome a handler raises, not a broken rule
    """A handler's transient failure (a receiver down, a refused association): try again."""


class GiveUp(Exception):
    """A handler's permanent failure (the receiver refused the content): retrying cannot help."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1: first * 2**(n-1), at most `longest`, with +/-20% jitter so
    jobs that failed together do not all come back at the same moment."""

    first: timedelta = timedelta(seconds=5)
    longest: timedelta = timedelta(minutes=10)

    def delay(self, attempts: int) -> timedelta:
        """
        >>> Backoff(timedelta(seconds=10)).delay(1) <= timedelta(seconds=12)
        True
        >>> Backoff(timedelta(seconds=10), timedelta(seconds=60)).delay(20).total_seconds() <= 72
        True
        """
        base: timedelta = min(self.first * 2 ** max(0, attempts - 1), self.longest)
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy


@dataclass(frozen=True, slots=True)
class LeasedJob:
    """A job a worker holds: what to do and which attempt this is (1 for the first)."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as an administrator sees it."""

    id: int
    kind: str
    subject: str | None
    state: JobState
    attempts: int
    max_attempts: int
    due_at: datetime
    created_at: datetime
    finished_at: datetime | None
    last_error: str | None
    outcome: str | None
    payload: dict[str, Any]


def _record(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        subject=row.subject,
        state=JobState(row.state),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        due_at=aware_utc(row.due_at),
        created_at=aware_utc(row.created_at),
        finished_at=aware_utc(row.finished_at) if row.finished_at is not None else None,
        last_error=row.last_error,
        outcome=row.outcome,
        payload=json.loads(row.payload),
    )


class JobQueue:
    def __init__(
        self,
        database: Database,
        *,
        max_attempts: int = 20,
        backoff: Backoff | None = None,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self._database = database
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._lease = lease
        # Set when a job is committed in this process: the worker thread starts at once
        # instead of at its next poll (other nodes see the job at their next poll).
        self.has_new_work = threading.Event()

    def enqueue(
        self,
        session: Session,
        kind: str,
        payload: dict[str, Any],
        *,
        subject: str | None = None,
        due_at: datetime | None = None,
    ) -> Job:
        """Add a job to the caller's transaction: it exists once (and only if) that commits."""
        job = Job(
            kind=kind,
            payload=json.dumps(payload, sort_keys=True),
            subject=subject,
            state=JobState.PENDING,
            attempts=0,
            max_attempts=self._max_attempts,
            due_at=due_at or utc_now(),
        )
        session.add(job)
        event.listen(session, "after_commit", self._wake, once=True)
        return job

    def _wake(self, _session: Session) -> None:
        self.has_new_work.set()

    def lease(self, worker: str, kinds: Iterable[str]) -> LeasedJob | None:
        """Take the job due longest ago among `kinds`, or None when none is due."""
        return self._database.transaction(lambda session: self._lease_in(session, worker, kinds))

    def _lease_in(self, session: Session, worker: str, kinds: Iterable[str]) -> LeasedJob | None:
        now = utc_now()
        due = or_(
            and_(Job.state == JobState.PENDING, Job.due_at <= now),
            # A worker that died holding a job: its lease ran out.
            and_(Job.state == JobState.RUNNING, Job.lease_until < now),
        )
        row = session.scalars(
            select(Job)
            .where(Job.kind.in_(list(kinds)), due)
            .order_by(Job.due_at, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        row.state = JobState.RUNNING
        row.attempts += 1
        row.leased_by = worker
        row.lease_until = now + self._lease
        return LeasedJob(row.id, row.kind, json.loads(row.payload), row.attempts, row.max_attempts)

    def complete(self, job: LeasedJob, outcome: str | None = None) -> None:
        self._finish(job, JobState.DONE, outcome=outcome)

    def fail(self, job: LeasedJob, error: str, *, is_permanent: bool = False) -> JobState:
        """Record a failed attempt: back to pending after a delay, or failed for good. Returns
        the state the job is left in."""
        if is_permanent or job.attempt >= job.max_attempts:
            self._finish(job, JobState.FAILED, error=error)
            return JobState.FAILED
        due = utc_now() + self._backoff.delay(job.attempt)
        self._database.transaction(
            lambda session: session.execute(
                update(Job)
                .where(Job.id == job.id, Job.state == JobState.RUNNING)
                .values(
                    state=JobState.PENDING,
                    due_at=due,
                    leased_by=None,
                    lease_until=None,
                    last_error=error[:MAX_ERROR_TEXT],
                )
            )
        )
        return JobState.PENDING

    def _finish(
        self,
        job: LeasedJob,
        state: JobState,
        *,
        outcome: str | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = dict(
            state=state, finished_at=utc_now(), leased_by=None, lease_until=None
        )
        if outcome is not None:
            values["outcome"] = outcome[:MAX_ERROR_TEXT]
        if error is not None:
            values["last_error"] = error[:MAX_ERROR_TEXT]
        self._database.transaction(
            lambda session: session.execute(
                update(Job).where(Job.id == job.id, Job.state == JobState.RUNNING).values(**values)
            )
        )

    # -- what an administrator sees and does -------------------------------------------------

    def recent(
        self,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """The newest jobs first, narrowed by state, kind or subject."""
        statement = select(Job).order_by(Job.id.desc()).limit(max(1, min(limit, LIST_LIMIT)))
        if state is not None:
            statement = statement.where(Job.state == state)
        if kind:
            statement = statement.where(Job.kind == kind)
        if subject:
            statement = statement.where(Job.subject == subject)
        with self._database.reading() as session:
            return [_record(row) for row in session.scalars(statement)]

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        with self._database.reading() as session:
            rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        found = {JobState(state): count for state, count in rows}
        return {state: found.get(state, 0) for state in JobState}

    def get(self, job_id: int) -> JobRecord:
        with self._database.reading() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise UnknownJobError(f"no job {job_id}")
            return _record(row)

    def retry(self, job_id: int, origin: Origin) -> JobRecord:
        """Give a failed job a fresh set of attempts, due now."""
        if origin.user is None:
            raise InvalidInput("a retry is done by a named user")

        def work(session: Session) -> JobRecord:
            row = session.get(Job, job_id)
            if row is None:
                raise UnknownJobError(f"no job {job_id}")
            if row.state != JobState.FAILED:
                raise JobNotFailedError(f"job {job_id} is {row.state}, not failed")
            row.state = JobState.PENDING
            row.due_at = utc_now()
            row.max_attempts = row.attempts + self._max_attempts
            row.finished_at = None
            row.last_error = f"{row.last_error or ''}\n(retried by {origin.user})".strip()
            event.listen(session, "after_commit", self._wake, once=True)
            return _record(row)

        return self._database.transaction(work)
