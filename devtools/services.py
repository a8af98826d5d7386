"""Throwaway databases on the real PostgreSQL server (ADVLAB_TEST_PG_URL), for tests and
benchmarks."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

PG_ADMIN_URL = os.environ.get("ADVLAB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def throwaway_pg_database(prefix: str, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new PostgreSQL database `{prefix}_<random>` beside admin_url's; yields its URL and drops
    it afterwards (its open connections terminated first)."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n"), {"n": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
