"""Schemathesis against the app's own OpenAPI schema: every operation, generated valid and
invalid inputs, zero 5xx and zero response-conformance violations (status code documented,
content type, body against the response schema, documented headers).

The app is the real one (create_app) on an Alembic-migrated store with the real Celery enqueue
writing to a filesystem broker in tmp_path (no worker consumes it), in five variants:
`open` (SQLite, ADVLAB_AUTH=none), `open-postgres` (a PostgreSQL database of its own: NUL bytes
and 32-bit columns fail there, not on SQLite), `token` (ADVLAB_AUTH=tokens with a valid bearer
token), `no-token` (tokens, no valid one: none, or the random bearer values schemathesis generates
from the security scheme; every /v1 answer must be a documented 401) and
`other-user` (a valid token of a user who owns none of the real rows: writes are 403), `cookie`
(the dashboard's flow: the session cookie from POST /login plus the page's X-CSRF-Token, no
bearer token) and `cookie-no-csrf` (the session cookie alone, as a cross-site form would send
it: every write must be a documented 403, every read as with a token). Random
ids only ever reach the 404 branch, so every case that names an experiment or sweep is ALSO sent
with the id of a real, finished experiment / sweep (re-created when a fuzzed DELETE removed it):
the 200/409 branches and the response models of real rows get fuzzed too.

Hypothesis is derandomized and bounded (FUZZ_EXAMPLES per operation, env ADVLAB_FUZZ_EXAMPLES);
every call lands in test-artifacts/schemathesis-<variant>.json (status counts per operation and
each failure with its curl reproduction).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from devtools.services import throwaway_pg_database
from tests.service.api_support import ApiFactory, run_fake_worker, spec

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
FUZZ_EXAMPLES = int(os.environ.get("ADVLAB_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


class FuzzTarget:
    """The app under test, a real experiment and sweep to aim at, and the report being built."""

    def __init__(self, api, variant: str, headers: dict[str, str]) -> None:
        self.api, self.variant, self.headers = api, variant, headers
        self.cookies: dict[str, str] = {}
        self.calls: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[dict[str, Any]] = []
        self._experiment_id: str | None = None
        self._sweep_id: str | None = None

    @property
    def client(self):
        return self.api.client

    def experiment_id(self) -> str:
        """A succeeded experiment with metrics and matrices (made again if fuzzing deleted it)."""
        store = self.api.store
        if self._experiment_id is not None:
            try:
                store.get_experiment(self._experiment_id)
                return self._experiment_id
            except Exception:
                pass
        response = self.client.post("/v1/experiments", json=spec(name=f"fuzz {uuid.uuid4().hex[:6]}"),
                                    headers=self.headers)
        assert response.status_code == 202, response.text
        self._experiment_id = response.json()["id"]
        run_fake_worker(store, self._experiment_id)
        return self._experiment_id

    def sweep_id(self) -> str:
        if self._sweep_id is None:
            response = self.client.post("/v1/sweeps", headers=self.headers, json={
                "base": spec(), "grid": {"learner.width": [4, 8]}, "seeds": [0]})
            assert response.status_code in (200, 202), response.text
            self._sweep_id = response.json()["id"]
        return self._sweep_id

    def record(self, case, response, failure: BaseException | None) -> None:
        key = f"{case.method.upper()} {case.path}"
        self.calls[key][str(response.status_code) if response is not None else "no response"] += 1
        if failure is not None:
            self.failures.append({"operation": key, "path_parameters": case.path_parameters,
                                  "query": case.query,
                                  "status": getattr(response, "status_code", None),
                                  "failure": str(failure)[:4000]})

    def write_report(self) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"schemathesis-{self.variant}.json"
        total = sum(sum(c.values()) for c in self.calls.values())
        server_errors = sum(n for c in self.calls.values() for code, n in c.items()
                            if code.startswith("5"))
        path.write_text(json.dumps({
            "variant": self.variant, "examples_per_operation": FUZZ_EXAMPLES,
            "checks": [c.__name__ for c in CHECKS], "requests": total,
            "server_errors": server_errors, "failures": self.failures,
            "operations": {k: dict(sorted(v.items())) for k, v in sorted(self.calls.items())},
        }, indent=2, default=str))
        return path


def _auth_available() -> bool:
    from lab.config import Settings

    return "auth" in Settings.model_fields


def _make_target(tmp_path_factory, migrated_sqlite, variant: str, database_url: str | None = None):
    factory = ApiFactory(tmp_path_factory.mktemp(f"fuzz-{variant}"), migrated_sqlite)
    if variant.startswith("open"):
        return factory, FuzzTarget(factory(database_url), variant, {})
    from service.auth import generate_token, hash_token

    # no-token: a high failure allowance, so the fuzzed requests meet the 401 path, not the
    # per-IP 429 that follows the first 20 bad tokens of a minute
    api = factory(auth="tokens", auth_failures_per_minute=1_000_000)
    token, user = generate_token(), f"fuzz-{uuid.uuid4().hex[:6]}"
    api.store.create_user(user)
    api.store.create_token(user, hash_token(token), label="schemathesis")
    target = FuzzTarget(api, variant, {"Authorization": f"Bearer {token}"})
    if variant == "no-token":
        # the real rows to aim at are made with the token; the fuzzed requests carry none
        target.experiment_id(), target.sweep_id()
        target.headers = {}
    elif variant == "other-user":
        # the rows are the first user's; a second (non-admin) user fuzzes them: writes are 403
        target.experiment_id(), target.sweep_id()
        other, other_token = f"fuzz-other-{uuid.uuid4().hex[:6]}", generate_token()
        api.store.create_user(other)
        api.store.create_token(other, hash_token(other_token), label="schemathesis")
        target.headers = {"Authorization": f"Bearer {other_token}"}
    elif variant.startswith("cookie"):
        # the rows are made with the token; the fuzzed requests carry the login session instead
        target.experiment_id(), target.sweep_id()
        login = api.client.post("/login", data={"token": token}, follow_redirects=False)
        assert login.status_code == 303, login.text
        target.cookies = {"advlab_session": login.cookies["advlab_session"]}
        from service.auth import csrf_token

        target.headers = {} if variant == "cookie-no-csrf" else {"X-CSRF-Token": csrf_token(token)}
    return factory, target


@pytest.fixture(scope="module", params=["open", "open-postgres"])
def open_target(request, tmp_path_factory, migrated_sqlite) -> Iterator[FuzzTarget]:
    """SQLite (the embedded default), and PostgreSQL (the lab server: NUL bytes, 32-bit
    integers and text comparisons behave differently there)."""
    database_url = None
    if request.param == "open-postgres":
        database_url = request.getfixturevalue("fuzz_pg_url")
    factory, target = _make_target(tmp_path_factory, migrated_sqlite, request.param, database_url)
    yield target
    print(f"schemathesis report: {target.write_report()}")
    factory.close()


@pytest.fixture(scope="module")
def fuzz_pg_url(pg_url) -> Iterator[str]:
    """A database of its own in the session's PostgreSQL (fuzzed rows meet no other test)."""
    with throwaway_pg_database("advlab_fuzz", pg_url) as url:
        yield url


@pytest.fixture(scope="module", params=["token", "no-token", "other-user", "cookie",
                                        "cookie-no-csrf"])
def tokens_target(request, tmp_path_factory, migrated_sqlite) -> Iterator[FuzzTarget]:
    if not _auth_available():
        pytest.skip("ADVLAB_AUTH=tokens is not implemented in lab.config.Settings yet")
    factory, target = _make_target(tmp_path_factory, migrated_sqlite, request.param)
    yield target
    print(f"schemathesis report: {target.write_report()}")
    factory.close()


def _schema(**settings: Any):
    """The schema as an app with these settings publishes it (building an app opens nothing:
    the store is opened by the lifespan, which the fixture's TestClient runs); the requests go
    to the fixture's app."""
    from lab.config import Settings
    from service.main import create_app

    fields = Settings.model_fields
    return schemathesis.openapi.from_dict(
        create_app(Settings(**{k: v for k, v in settings.items() if k in fields})).openapi())


open_schema = _schema(auth="none")
tokens_schema = _schema(auth="tokens")
REAL_ID_PARAMS = {"experiment_id": "experiment_id", "sweep_id": "sweep_id"}
HYPOTHESIS = settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None,
                      database=None, suppress_health_check=list(HealthCheck), print_blob=False)


@open_schema.parametrize()
@HYPOTHESIS
def test_open_api_answers_every_generated_request_without_5xx_and_as_documented(
        case, open_target):
    _call_and_aim(case, open_target)


@tokens_schema.parametrize()
@HYPOTHESIS
def test_token_api_answers_every_generated_request_without_5xx_and_as_documented(
        case, tokens_target):
    _call_and_aim(case, tokens_target)


def _call_and_aim(case, target: FuzzTarget) -> None:
    """The generated request, then the same at a real row (reaches past the 404)."""
    _call(case, target)
    aimed = {name: getattr(target, REAL_ID_PARAMS[name])()
             for name in (case.path_parameters or {}) if name in REAL_ID_PARAMS}
    if aimed:
        case.path_parameters = {**case.path_parameters, **aimed}
        _call(case, target)


def _call(case, target: FuzzTarget) -> None:
    if target.headers:
        case.headers = {**(case.headers or {}), **target.headers}
    if target.cookies:  # the session alone: drop a generated bearer header (it would win)
        case.cookies = {**(case.cookies or {}), **target.cookies}
        case.headers = {k: v for k, v in (case.headers or {}).items()
                        if k.lower() != "authorization"}
    response = None
    try:
        response = case.call(app=target.client.app)
        case.validate_response(response, checks=CHECKS)
    except BaseException as exc:
        target.record(case, response, exc)
        raise
    target.record(case, response, None)
