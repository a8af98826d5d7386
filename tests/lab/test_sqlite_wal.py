"""The SQLite WAL stays bounded under constant reads: readers that always overlap keep the
automatic checkpoint from ever restarting the WAL (it grew to 30x the database in issue 9);
the store's WalCheckpointer empties it while a writer streams metric points."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.poll import poll
from lab.store.base import MetricPoint
from lab.store.migrate import upgrade
from lab.store.session import make_engine
from lab.store.sql import SqlStore

BATCHES = 200  # metric batches the writer commits
POINTS = 200  # points per batch (about 30 KB of WAL each)
WRITE_EVERY_S = 0.01  # the writer's pause between batches (a worker computes between writes)
READERS = 4
MB = 2**20


def stream_under_constant_reads(path: Path, checkpoint_every_s: float | None) -> tuple[int, int]:
    """Write BATCHES metric batches while READERS threads keep overlapping read transactions
    open; return (largest WAL size seen after a commit, database size) in bytes."""
    url = f"sqlite:///{path}"
    upgrade("head", url)
    store = SqlStore(make_engine(url), checkpoint_every_s=checkpoint_every_s)
    exp, _ = store.create_experiment(name="wal", tags=[], spec={}, spec_hash="h",
                                     total_steps=BATCHES)
    exp = store.start_attempt(exp.id, "test-writer")
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            with store.sessions.read() as session:  # a read transaction, held a moment
                session.execute(sa.text("SELECT count(*) FROM experiments")).scalar()
                time.sleep(0.005)

    readers = [threading.Thread(target=read) for _ in range(READERS)]
    for t in readers:
        t.start()
    wal = Path(f"{path}-wal")
    largest = 0
    try:
        for batch in range(BATCHES):
            store.add_metrics(exp.id, exp.attempts, [
                MetricPoint("train/loss", batch * POINTS + i, 1.0 / (1 + i), 0)
                for i in range(POINTS)])
            time.sleep(WRITE_EVERY_S)
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    finally:
        done.set()
        for t in readers:
            t.join()
        store.close()
    return largest, path.stat().st_size


@pytest.fixture(scope="module")
def unbounded(tmp_path_factory) -> tuple[int, int]:
    return stream_under_constant_reads(tmp_path_factory.mktemp("wal") / "advlab.db", None)


def test_without_checkpoints_constant_reads_let_the_wal_outgrow_the_database(unbounded):
    """The scenario reproduces the issue (else the bound below would prove nothing)."""
    largest, database = unbounded
    assert largest > database > 4 * MB


def test_periodic_truncate_checkpoints_keep_the_wal_bounded(tmp_path, unbounded):
    largest, database = stream_under_constant_reads(tmp_path / "advlab.db", 0.02)
    assert largest < 3 * MB and largest < unbounded[0] / 3
    assert database > 4 * MB  # the data is all there: it moved into the database file


def test_engines_set_a_journal_size_limit(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", journal_size_limit=3 * MB)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == 3 * MB
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_the_api_store_checkpoints_on_a_sqlite_file_and_stops_on_close(tmp_path):
    from lab.config import Settings
    from lab.store import open_store

    url = f"sqlite:///{tmp_path / 'advlab.db'}"
    upgrade("head", url)
    store = open_store(url, settings=Settings(home=tmp_path, sqlite_checkpoint_s=0.01))
    checkpointer = store.checkpointer
    assert checkpointer is not None and checkpointer.every_s == 0.01
    try:
        poll(lambda: checkpointer.completed >= 2, timeout=30, every=0.01)
    finally:
        store.close()
    assert checkpointer.completed >= 2
    assert not checkpointer._thread.is_alive()
