"""Column types shared by the tables."""

from __future__ import annotations

from sqlalchemy import String


def search_string(length: int) -> String:
    """A normalised search column: byte-ordered on PostgreSQL so prefix ranges use the index."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")
