"""Fixtures shared by the service tests."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from devtools.services import throwaway_pg_database


@pytest.fixture(scope="module")
def pg_database(request, pg_url: str) -> Iterator[Callable[[], str]]:
    """A migrated PostgreSQL database for this module (`advlab_<module>_…`); `fresh()` empties it
    for the next test and returns its URL (TRUNCATE is much cheaper than a database per test)."""
    import sqlalchemy as sa

    from lab.store.migrate import upgrade

    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with throwaway_pg_database(f"advlab_{module}") as url:
        upgrade("head", url)
        engine = sa.create_engine(url)
        tables = [t for t in sa.inspect(engine).get_table_names() if t != "alembic_version"]

        def fresh() -> str:
            with engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
            return url

        yield fresh
        engine.dispose()
