"""Alembic owns the schema: empty → head → base on SQLite and PostgreSQL (a throwaway database,
not the session's shared one), the ORM matches what the migrations build, and `advlab migrate`
migrates the database named by ADVLAB_DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lab.store import open_store
from lab.store.base import SchemaOutOfDate
from lab.store.migrate import current, downgrade, head_revisions, upgrade
from lab.store.tables import metadata
from lab.store.session import make_engine
from devtools.services import throwaway_pg_database
from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
TABLES = {"experiments", "metric_points", "metric_series", "metric_blocks", "correlation_matrices",
          "sweeps", "sweep_members",  # 0002_sweeps
          "users", "api_tokens"}  # 0003_auth


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """An empty database of each backend; PostgreSQL's is created here and dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/m.db"
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with throwaway_pg_database("advlab_mig") as url:
        yield url


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_to_head_then_downgrade_to_base(empty_url):
    assert current(empty_url) == set() and tables(empty_url) == set()
    upgrade("head", empty_url)
    assert current(empty_url) == head_revisions() and tables(empty_url) == TABLES
    downgrade("base", empty_url)
    assert current(empty_url) == set() and tables(empty_url) == set()
    upgrade("head", empty_url)  # and back up again: the downgrade left nothing behind
    assert tables(empty_url) == TABLES


def test_migrated_schema_matches_the_orm_models(empty_url):
    upgrade("head", empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_open_store_refuses_an_out_of_date_schema_and_accepts_head(empty_url):
    with pytest.raises(SchemaOutOfDate):
        open_store(empty_url)
    upgrade("head", empty_url)
    store = open_store(empty_url)
    store.ping()
    store.close()
    downgrade("base", empty_url)
    with pytest.raises(SchemaOutOfDate):
        open_store(empty_url)


def test_advlab_migrate_command_migrates_the_configured_database(tmp_path):
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {**os.environ, "ADVLAB_DATABASE_URL": url, "ADVLAB_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "client.cli", "migrate"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert current(url) == head_revisions()


def test_default_database_is_sqlite_under_advlab_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ADVLAB_DATABASE_URL"}
    env["ADVLAB_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "client.cli", "migrate"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert current(f"sqlite:///{tmp_path}/home/advlab.db") == head_revisions()
