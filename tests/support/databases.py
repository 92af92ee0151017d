"""Fresh, empty index databases for tests: a SQLite file, or a new PostgreSQL schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from support.server import RunningServer, start_server

POSTGRES_ADMIN_URL = os.environ.get(
    "PEDIPACS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_is_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _execute(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


def count_rows(database_url: str, table: type) -> int:
    """How many rows `table` holds in a running server's database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        engine.dispose()


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a new empty database of `kind` (sqlite|postgresql), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'index.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        _execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def server_on_fresh_database(kind: str, folder: Path) -> Iterator[RunningServer]:
    """`pedipacs serve` on a new empty database of `kind`, stopped and dropped afterwards."""
    with fresh_database(kind, folder) as url:
        server = start_server(folder / "server", url)
        try:
            yield server
        finally:
            server.stop()
