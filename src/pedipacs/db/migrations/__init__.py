"""Alembic migrations of the index database."""
