"""Engines and the one place where transactions commit or roll back.

SQLite: WAL (readers never block the writer), foreign keys ON (cascading deletes), a busy
timeout, and `BEGIN IMMEDIATE` for write transactions: a deferred transaction that reads and
then writes can fail at once with "database is locked" when another writer got in between;
taking the write lock up front makes it wait on the busy timeout instead.
PostgreSQL: psycopg 3 with pool_pre_ping (a restarted server does not break the pool).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 60_000
_BEGIN_OPTION = "advlab_sqlite_begin"


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (SQLAlchemy's default is psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, **kwargs) -> sa.Engine:
    """An engine configured for the store's access pattern (see the module docstring)."""
    url = normalise_url(url)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, **kwargs)

    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)  # the pool hands connections across threads
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    if not database or database == ":memory:":
        kwargs.setdefault("poolclass", sa.StaticPool)  # one shared in-memory database
    else:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 40)
        kwargs.setdefault("pool_timeout", 120)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED"))

    return engine


class Sessions:
    """Read and write sessions over one engine; commit on success, roll back on error."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_engine = (
            engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}) if self.is_sqlite else engine
        )

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (SQLite: takes the write lock at BEGIN)."""
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session
