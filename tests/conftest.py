"""Shared fixtures. Real services: PostgreSQL and Redis on this machine.

When CI=true a missing service fails the test (it must not silently skip); elsewhere it skips.
Each test session gets its own PostgreSQL database and Redis db/queue names, so parallel runs
and helpers never see each other's rows.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from devtools.services import throwaway_pg_database

if TYPE_CHECKING:
    from tests.service.api_support import Api, ApiFactory

REDIS_URL = os.environ.get("ADVLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (CI=true always runs them)")


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker computes on its share of the cores, as a Celery worker does
    (worker.placement): with torch's default pool of one thread per core in every worker, two
    workers on two cores spin against each other, and a small-batch oracle test took 52 s
    instead of 3.7 s."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if workers > 1:
        import torch

        from worker.placement import host_cores

        torch.set_num_threads(max(1, host_cores() // workers))


# tests that start real servers, workers, browsers or fuzzers: every one of them counts as slow
INTEGRATION_DIRS = ("e2e", "browser", "fuzz")
TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A local run leaves the `slow` tests (marked, or under INTEGRATION_DIRS) out unless --slow
    (or a -m expression) asks for them; CI (CI=true) runs every test."""
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS_DIR).parts
        if parts and parts[0] in INTEGRATION_DIRS:
            item.add_marker(pytest.mark.slow)
    if IN_CI or config.getoption("--slow") or config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


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


# ------------------------------------------------------------ the API on a migrated store

@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Alembic-migrated SQLite file, copied per test (migrating each time costs more)."""
    from lab.store.migrate import upgrade

    path = tmp_path_factory.mktemp("api-template") / "advlab.db"
    upgrade("head", f"sqlite:///{path}")
    return path


@pytest.fixture
def make_api(tmp_path: Path, migrated_sqlite: Path) -> Iterator["ApiFactory"]:
    """Factory: make_api(database_url=None, **settings) → Api on a migrated database (a copy
    of the migrated SQLite template by default)."""
    from tests.service.api_support import ApiFactory

    factory = ApiFactory(tmp_path, migrated_sqlite)
    yield factory
    factory.close()


@pytest.fixture
def token_api(make_api) -> tuple["Api", dict[str, str]]:
    """An API with ADVLAB_AUTH=tokens and three users, alice and bob (users) and root (admin),
    each with one token: (api, {name: token})."""
    from service.auth import generate_token, hash_token

    api = make_api(auth="tokens")
    tokens = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        api.store.create_user(name, is_admin=admin)
        tokens[name] = generate_token()
        api.store.create_token(name, hash_token(tokens[name]))
    return api, tokens


@pytest.fixture(scope="module")
def make_module_api(tmp_path_factory: pytest.TempPathFactory,
                    migrated_sqlite: Path) -> Iterator["ApiFactory"]:
    """The same, shared by a module's tests that must leave no trace (they check that)."""
    from tests.service.api_support import ApiFactory

    factory = ApiFactory(tmp_path_factory.mktemp("api"), migrated_sqlite)
    yield factory
    factory.close()
