"""Migrations: from empty to head on both databases, no drift from the tables, reversible."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

import pedipacs.db.tables  # noqa: F401  (registers the tables)
from pedipacs.db.base import Base
from pedipacs.db.migrate import alembic_config, downgrade, upgrade
from pedipacs.db.tables import AuditChainHead, AuditEvent
from pedipacs.security.audit import verify_chain


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


def test_audit_records_written_before_the_chain_are_chained_by_the_migration(
    database_url: str,
) -> None:
    upgrade(database_url, "4c1d2e7f9a10")  # the revision before the audit chain
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for number in range(3):
                connection.execute(
                    text(
                        "INSERT INTO audit_event (at, event_id, event_name, event_action, "
                        "outcome, door, detail) VALUES (:at, '110112', 'Query', 'E', 0, 'CLI', "
                        ":detail)"
                    ),
                    {"at": datetime(2026, 11, 1, 8, number, tzinfo=UTC), "detail": f"old {number}"},
                )
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(select(AuditEvent).order_by(AuditEvent.sequence))
            head = connection.execute(
                select(AuditChainHead.sequence, AuditChainHead.record_hash)
            ).one()
            report = verify_chain(iter(rows), (head.sequence, head.record_hash))
    finally:
        engine.dispose()
    assert report.is_intact, report
    assert report.records_checked == 3
