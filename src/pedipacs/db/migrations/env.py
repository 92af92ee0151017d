"""Alembic environment: runs migrations on the URL given by pedipacs (or alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

import pedipacs.db.tables  # noqa: F401  (registers every table on the metadata)
from pedipacs.db.base import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from pedipacs.config import Settings

        url = Settings().resolved_database_url
    return str(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        is_postgresql = connection.dialect.name == "postgresql"
        if is_postgresql:
            # Several nodes may start at once: one migrates, the others wait for it.
            connection.execute(text("SELECT pg_advisory_lock(74657)"))
            connection.execute(text("SET lock_timeout = '60s'"))
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=not is_postgresql,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if is_postgresql:
            connection.execute(text("SELECT pg_advisory_unlock(74657)"))
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
