"""Engines and the one place where transactions commit or roll back.

SQLite: WAL (readers never block the writer), foreign keys ON (cascading deletes), a busy
timeout, and `BEGIN IMMEDIATE` for write transactions: a deferred transaction that reads and
then writes can fail at once with "database is locked" when another writer got in between;
taking the write lock up front makes it wait on the busy timeout instead.

The WAL stays bounded. An automatic checkpoint (PASSIVE, after each commit past 1000 pages) can
only copy the frames no open read transaction still needs, and the WAL restarts from its
beginning only once every frame has been copied and no reader uses it: under constant
overlapping reads that never happens, and the file grew to 30x the database (issue 9: 295 MB
WAL, 10 MB database). `WalCheckpointer` runs `wal_checkpoint(TRUNCATE)` every few seconds on a
connection of its own: it waits (up to CHECKPOINT_BUSY_MS) for the readers of old snapshots to
finish while new readers start on the database file, then empties the WAL. `journal_size_limit`
truncates the file whenever the WAL restarts on its own as well.
PostgreSQL: psycopg 3 with pool_pre_ping (a restarted server does not break the pool).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("advlab.store")

SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_JOURNAL_SIZE_LIMIT = 16 * 2**20  # bytes the WAL file is truncated to after a reset
CHECKPOINT_BUSY_MS = 5_000  # how long a checkpoint waits out readers (and holds off writers)
_BEGIN_OPTION = "advlab_sqlite_begin"


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (SQLAlchemy's default is psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, journal_size_limit: int = SQLITE_JOURNAL_SIZE_LIMIT,
                **kwargs) -> sa.Engine:
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
        cur.execute(f"PRAGMA journal_size_limit={int(journal_size_limit)}")
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


def sqlite_file(engine: sa.Engine) -> str | None:
    """The database file of a SQLite engine (None: another backend, or in memory)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(Path(database).expanduser())


class WalCheckpointer:
    """Every `every_s`, `PRAGMA wal_checkpoint(TRUNCATE)` on a SQLite file from a thread and
    connection of its own (see the module docstring). A checkpoint that cannot finish within
    `busy_ms` (a long reader) gives up and is tried again at the next period."""

    def __init__(self, database: str, every_s: float, *, busy_ms: int = CHECKPOINT_BUSY_MS,
                 journal_size_limit: int = SQLITE_JOURNAL_SIZE_LIMIT) -> None:
        self.database, self.every_s, self.busy_ms = database, every_s, busy_ms
        self.journal_size_limit = journal_size_limit
        self.completed = 0  # checkpoints that emptied the WAL
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def checkpoint(self, conn: sqlite3.Connection) -> bool:
        """One checkpoint; True when it emptied the WAL."""
        busy, _log, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            self.completed += 1
        return not busy

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=self.busy_ms / 1000,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_ms)}")
            conn.execute(f"PRAGMA journal_size_limit={int(self.journal_size_limit)}")
            while not self._stop.wait(self.every_s):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error as exc:  # locked or gone: the next period tries again
                    log.debug("WAL checkpoint of %s failed: %s", self.database, exc)
        finally:
            conn.close()

    def start(self) -> "WalCheckpointer":
        self._thread = threading.Thread(target=self._run, name="advlab-wal-checkpoint",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.busy_ms / 1000 + 5)
