"""Alembic environment: the URL comes from the caller (lab.store.migrate passes it in
`config.attributes["url"]`) or from Settings (ADVLAB_DATABASE_URL, default SQLite under
ADVLAB_HOME). The engine is the store's own (WAL, foreign keys, psycopg 3)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from lab.config import get_settings
from lab.store.tables import metadata
from lab.store.session import make_engine, normalise_url

config = context.config
if config.config_file_name is not None:  # the alembic CLI (alembic.ini); not `advlab migrate`
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = metadata


def _url() -> str:
    return config.attributes.get("url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=normalise_url(_url()), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",  # ALTER via table copy
                compare_type=True,
                # our SQLite engine issues real BEGINs, so DDL is transactional there too
                transactional_ddl=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
