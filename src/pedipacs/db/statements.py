"""Portable statements the dialects spell differently."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflict(
    connection: Connection, table: Table, values: dict[str, Any], conflict_columns: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a concurrent creator wins, nobody fails."""
    dialect = connection.dialect.name
    dialect_module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = (
        dialect_module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict_columns)
    )
    connection.execute(statement)
