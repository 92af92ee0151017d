"""Engine and session factories; SQLite runs in WAL mode with synchronous=FULL.

SQLite has one writer: write transactions start with BEGIN IMMEDIATE so they queue on the
busy timeout instead of failing when a reader upgrades. PostgreSQL transactions that fail on a
serialization or deadlock error are retried with jittered back-off.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
MAX_ATTEMPTS = 6
# PostgreSQL SQLSTATEs worth retrying: serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def _configure_sqlite(engine: Engine, *, is_writer: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if is_writer else "BEGIN")


def _create(url: str, *, is_writer: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=False)
        _configure_sqlite(engine, is_writer=is_writer)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class WriterLock:
    """One SQLite writer at a time across the threads and processes of this machine.

    SQLite's own busy handler sleeps 1, 2, 5, 10, ... ms between retries, so two DIMSE worker
    processes contending for the write lock would spend their time asleep. A kernel file lock
    hands over the moment it is released.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Database:
    """The index database: a writer and a reader engine (one and the same on PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._writer_lock: WriterLock | None = None
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            self._writer_lock = WriterLock(Path(f"{parsed.database}.writer-lock"))
        self.write_engine = _create(url, is_writer=True)
        self.read_engine = _create(url, is_writer=False) if self.is_sqlite else self.write_engine
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A write transaction: commits once on success, rolls back on any error."""
        with self._writer_turn(), self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if self._writer_lock is None:
            yield
            return
        with self._writer_lock.held():
            yield

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction."""
        with self._read_sessions() as session, session.begin():
            yield session

    def transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a write transaction, retrying serialization failures and deadlocks."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.unit_of_work() as session:
                    return work(session)
            except DBAPIError as error:
                if attempt == MAX_ATTEMPTS or not _is_retryable(error):
                    raise
                delay = min(0.5, 0.005 * 2**attempt) * random.uniform(0.5, 1.5)  # noqa: S311
                log.debug("retrying transaction after %s (attempt %d)", error.orig, attempt)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.close()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def _is_retryable(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    # SQLite reports a lock that outlived busy_timeout as "database is locked".
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)
