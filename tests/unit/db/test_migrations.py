"""Migrations: from empty to head on both databases, no drift from the tables, reversible."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

import pedipacs.db.tables  # noqa: F401  (registers the tables)
from pedipacs.db.base import Base
from pedipacs.db.migrate import alembic_config, downgrade, upgrade


def test_upgrade_from_empty_creates_every_table(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables


def test_migrations_and_tables_do_not_drift(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_newest_revision_downgrades_and_upgrades_again(database_url: str) -> None:
    upgrade(database_url)
    script = ScriptDirectory.from_config(alembic_config(database_url))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision or "base"
    downgrade(database_url, str(previous))
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head
    finally:
        engine.dispose()


def test_migration_files_follow_the_naming_convention() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    for revision in script.walk_revisions():
        name = revision.path.rsplit("/", 1)[-1]
        assert name[:8].isdigit() and name[8] == "_" and name[9:13].isdigit(), name
        assert revision.doc and "autogenerate" not in (revision.module.__doc__ or "")
