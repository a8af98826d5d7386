"""Alembic, programmatically: `advlab migrate`, `advlab serve` and the tests use these functions;
`alembic -c alembic.ini ...` from the repository root does the same by hand.

The URL is the argument, else Settings (ADVLAB_DATABASE_URL, default SQLite under ADVLAB_HOME).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from lab.config import get_settings
from lab.store.session import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _url(url: str | None) -> str:
    return url or get_settings().resolved_database_url


def alembic_config(url: str | None = None) -> Config:
    """A Config without alembic.ini; env.py reads the URL from `attributes` (no % escaping)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = _url(url)
    return cfg


def upgrade(revision: str = "head", url: str | None = None) -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(revision: str, url: str | None = None) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current(url: str | None = None, *, engine: sa.Engine | None = None) -> set[str]:
    """The revisions the database is at (empty set: never migrated)."""
    own = engine is None
    engine = engine or make_engine(_url(url))
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        if own:
            engine.dispose()
