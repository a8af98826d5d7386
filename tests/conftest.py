"""Shared fixtures. Real services: PostgreSQL and Redis on this machine.

When CI=true a missing service fails the test (it must not silently skip); elsewhere it skips.
Each test session gets its own PostgreSQL database and Redis db/queue names, so parallel runs
and helpers never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest

PG_ADMIN_URL = os.environ.get("ADVLAB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ADVLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail under CI, skip elsewhere, when a real service is not reachable."""
    if _port_open(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service fails the run)")
    pytest.skip(message)


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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with throwaway_pg_database("advlab_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL
