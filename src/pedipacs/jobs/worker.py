"""A job worker: a thread that leases due jobs and hands each to the handler of its kind.

A handler is `handle(job) -> outcome text` (the thin-adapter rule applied to jobs: it turns the
payload into one service call or one protocol exchange). It raises `RetryLater` for a failure
worth retrying, `GiveUp` for one that is not; any other exception counts as worth retrying and
is logged with its traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

from pedipacs.jobs.queue import GiveUp, JobQueue, JobState, LeasedJob, RetryLater

log = logging.getLogger(__name__)

Handler = Callable[[LeasedJob], str | None]


def worker_name() -> str:
    """Who holds a lease, for the administrator's list: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobWorker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        poll_seconds: float = 2.0,
        name: str | None = None,
    ) -> None:
        self._queue = queue
        self._handlers = dict(handlers)
        self._poll_seconds = poll_seconds
        self._name = name or worker_name()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._queue.has_new_work.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_due(self) -> int:
        """Run every job due now, one after the other; the number run."""
        count = 0
        while not self._stopping.is_set():
            try:
                job = self._queue.lease(self._name, self._handlers)
            except Exception:  # the database away for a moment: try at the next poll
                log.exception("could not lease a job")
                return count
            if job is None:
                return count
            self._run_one(job)
            count += 1
        return count

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._queue.has_new_work.clear()
            self.run_due()
            self._queue.has_new_work.wait(self._poll_seconds)

    def _run_one(self, job: LeasedJob) -> None:
        handler = self._handlers[job.kind]
        try:
            outcome = handler(job)
        except GiveUp as error:
            self._record_failure(job, str(error), is_permanent=True)
        except RetryLater as error:
            self._record_failure(job, str(error), is_permanent=False)
        except Exception as error:
            log.exception("job %d (%s) failed", job.id, job.kind)
            self._record_failure(job, f"{type(error).__name__}: {error}", is_permanent=False)
        else:
            self._queue.complete(job, outcome)
            log.info("job %d (%s) done: %s", job.id, job.kind, outcome or "")

    def _record_failure(self, job: LeasedJob, error: str, *, is_permanent: bool) -> None:
        state = self._queue.fail(job, error, is_permanent=is_permanent)
        level = logging.ERROR if state is JobState.FAILED else logging.WARNING
        log.log(
            level,
            "job %d (%s) attempt %d/%d failed (%s): %s",
            job.id, job.kind, job.attempt, job.max_attempts, state, error,
        )  # fmt: skip
