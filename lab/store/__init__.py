"""Persistence: `open_store()` gives the Store (lab.store.base) the API and the worker use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.store.base import SchemaOutOfDate, Store

if TYPE_CHECKING:
    from lab.config import Settings

__all__ = ["open_store", "Store"]


def open_store(url: str | None = None, *, check_schema: bool = True,
               settings: "Settings | None" = None) -> Store:
    """A SqlStore on `url` (default: Settings.resolved_database_url). Raises SchemaOutOfDate
    unless the database is at the Alembic head: the app refuses an out-of-date schema. On a
    SQLite file the store checkpoints its WAL every `sqlite_checkpoint_s` until closed."""
    from lab.config import get_settings
    from lab.store.migrate import current, head_revisions
    from lab.store.session import make_engine
    from lab.store.sql import SqlStore

    settings = settings or get_settings()
    engine = make_engine(url or settings.resolved_database_url,
                         journal_size_limit=settings.sqlite_journal_size_limit_mb * 2**20)
    if check_schema:
        at = current(engine=engine)
        heads = head_revisions()
        if at != heads:
            engine.dispose()
            raise SchemaOutOfDate(
                f"database is at {sorted(at) or 'no revision'}, code expects {sorted(heads)}: "
                "run `advlab migrate`")
    return SqlStore(engine, metric_batch=settings.metric_batch,
                    checkpoint_every_s=settings.sqlite_checkpoint_s)
