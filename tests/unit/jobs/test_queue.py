"""The durable job queue on both databases: a job exists only if its transaction commits; a
worker leases due jobs once; failures come back later until the attempts run out; a job held by
a dead worker is taken again when its lease runs out; an administrator retries a failed job."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from pedipacs.db.base import utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import Job
from pedipacs.jobs.queue import (
    Backoff,
    GiveUp,
    JobNotFailedError,
    JobQueue,
    JobState,
    LeasedJob,
    RetryLater,
)
from pedipacs.jobs.worker import JobWorker
from pedipacs.model.origin import Origin
from pedipacs.node import Node

ADMIN = Origin.http("admin", "127.0.0.1")
NO_WAIT = Backoff(first=timedelta(0), longest=timedelta(0))


@pytest.fixture
def database(node: Node) -> Database:
    return node.database


def queue(database: Database, **options: object) -> JobQueue:
    return JobQueue(database, **options)  # type: ignore[arg-type]


def enqueue(database: Database, jobs: JobQueue, kind: str = "test", **payload: object) -> int:
    with database.unit_of_work() as session:
        job = jobs.enqueue(session, kind, dict(payload), subject="thing:1")
        session.flush()
        return job.id


def test_a_job_exists_only_if_its_transaction_commits(database: Database) -> None:
    jobs = queue(database)
    with pytest.raises(RuntimeError), database.unit_of_work() as session:
        jobs.enqueue(session, "test", {"n": 1})
        raise RuntimeError("the change that caused it failed")
    assert not jobs.has_new_work.is_set()
    assert jobs.lease("w1", ["test"]) is None
    enqueue(database, jobs, n=2)
    assert jobs.has_new_work.is_set()  # the worker of this process is woken at commit
    leased = jobs.lease("w1", ["test"])
    assert leased is not None and leased.payload == {"n": 2} and leased.attempt == 1


def test_a_leased_job_is_not_taken_twice_and_a_dead_workers_job_comes_back(
    database: Database,
) -> None:
    jobs = queue(database, lease=timedelta(minutes=2))
    job_id = enqueue(database, jobs)
    assert jobs.lease("w1", ["test"]) is not None
    assert jobs.lease("w2", ["test"]) is None
    assert jobs.lease("w2", ["other-kind"]) is None
    with database.unit_of_work() as session:  # w1 died; its lease ran out
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_until=utc_now() - timedelta(1))
        )
    again = jobs.lease("w2", ["test"])
    assert again is not None and again.id == job_id and again.attempt == 2


def test_failures_retry_with_back_off_until_the_attempts_run_out(database: Database) -> None:
    jobs = queue(database, max_attempts=3, backoff=Backoff(timedelta(hours=1), timedelta(hours=2)))
    job_id = enqueue(database, jobs)
    leased = jobs.lease("w1", ["test"])
    assert leased is not None
    assert jobs.fail(leased, "receiver down") is JobState.PENDING
    record = jobs.get(job_id)
    assert record.due_at > utc_now() + timedelta(minutes=45)  # an hour, give or take 20%
    assert jobs.lease("w1", ["test"]) is None  # not due yet
    fast = queue(database, max_attempts=3, backoff=NO_WAIT)
    for attempt in (2, 3):
        with database.unit_of_work() as session:
            session.execute(update(Job).where(Job.id == job_id).values(due_at=utc_now()))
        leased = fast.lease("w1", ["test"])
        assert leased is not None and leased.attempt == attempt
        state = fast.fail(leased, f"down again ({attempt})")
    assert state is JobState.FAILED
    failed = fast.get(job_id)
    assert (failed.state, failed.attempts, failed.last_error) == (
        JobState.FAILED, 3, "down again (3)"
    )  # fmt: skip
    assert fast.counts()[JobState.FAILED] == 1


def test_an_administrator_retries_a_failed_job_only(database: Database) -> None:
    jobs = queue(database, max_attempts=1)
    job_id = enqueue(database, jobs)
    leased = jobs.lease("w1", ["test"])
    assert leased is not None
    jobs.fail(leased, "refused", is_permanent=True)
    retried = jobs.retry(job_id, ADMIN)
    assert retried.state is JobState.PENDING and "retried by admin" in (retried.last_error or "")
    with pytest.raises(JobNotFailedError):
        jobs.retry(job_id, ADMIN)
    leased = jobs.lease("w1", ["test"])
    assert leased is not None and leased.attempt == 2 and leased.max_attempts == 2
    jobs.complete(leased, "sent")
    assert jobs.get(job_id).state is JobState.DONE
    assert [j.id for j in jobs.recent(state=JobState.DONE, subject="thing:1")] == [job_id]


def test_the_worker_runs_each_kind_with_its_handler_and_records_the_outcome(
    database: Database,
) -> None:
    jobs = queue(database, max_attempts=2, backoff=NO_WAIT)
    done = enqueue(database, jobs, "ok", n=1)
    flaky = enqueue(database, jobs, "flaky")
    refused = enqueue(database, jobs, "refused")
    broken = enqueue(database, jobs, "broken")
    calls: list[tuple[str, int]] = []

    def ok(job: LeasedJob) -> str:
        calls.append((job.kind, job.attempt))
        return f"handled {job.payload['n']}"

    def flaky_handler(job: LeasedJob) -> str:
        calls.append((job.kind, job.attempt))
        if job.attempt == 1:
            raise RetryLater("not yet")
        return "second time lucky"

    def refuse(job: LeasedJob) -> str:
        calls.append((job.kind, job.attempt))
        raise GiveUp("content refused")

    def crash(job: LeasedJob) -> str:
        calls.append((job.kind, job.attempt))
        raise ValueError("a bug")

    worker = JobWorker(jobs, {"ok": ok, "flaky": flaky_handler, "refused": refuse, "broken": crash})
    while worker.run_due():
        pass
    assert sorted(calls) == [("broken", 1), ("broken", 2), ("flaky", 1), ("flaky", 2),
                             ("ok", 1), ("refused", 1)]  # fmt: skip
    states = {job_id: jobs.get(job_id) for job_id in (done, flaky, refused, broken)}
    assert (states[done].state, states[done].outcome) == (JobState.DONE, "handled 1")
    assert states[flaky].state is JobState.DONE
    assert (states[refused].state, states[refused].last_error) == (
        JobState.FAILED, "content refused"
    )  # fmt: skip
    assert states[broken].state is JobState.FAILED
    assert states[broken].last_error == "ValueError: a bug"


def test_a_worker_thread_starts_at_once_when_a_job_is_committed(database: Database) -> None:
    jobs = queue(database)
    handled = threading.Event()
    worker = JobWorker(jobs, {"test": lambda job: handled.set() or "ok"}, poll_seconds=300)
    worker.start()
    try:
        enqueue(database, jobs)
        assert handled.wait(10), "the worker waited for its next poll"
    finally:
        worker.stop(10)
