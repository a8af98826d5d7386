"""The lab deployment end to end: PostgreSQL + Redis (the real servers on this machine), a real
API process and a real worker process. A database of its own (so no other test's rows meet this
worker's reaper) and a queue name of its own on Redis db 0."""

from __future__ import annotations

import uuid

import pytest
import redis

from devtools.services import throwaway_pg_database
from tests.e2e.checks import assert_full_run_results
from devtools.stack import launch_stack, tiny_spec

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def lab_db(pg_url):
    with throwaway_pg_database("advlab_lab", pg_url) as url:
        yield url


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_db, redis_url):
    env = {"ADVLAB_DATABASE_URL": lab_db, "ADVLAB_BROKER_URL": redis_url,
           "ADVLAB_QUEUE": f"advlab-lab-{uuid.uuid4().hex[:8]}"}
    stack = launch_stack(tmp_path_factory.mktemp("lab"), env, workers=1)
    yield stack
    stack.close()
    client = redis.Redis.from_url(redis_url)
    client.delete(env["ADVLAB_QUEUE"], f"_kombu.binding.{env['ADVLAB_QUEUE']}")
    client.close()


def test_lab_stack_runs_a_submitted_spec_on_postgres_and_redis(lab, lab_db, redis_url):
    health = lab.client().get("/v1/health").json()
    assert health["status"] == "ok", health
    spec = tiny_spec(name="lab e2e", seed=3)
    experiment_id = lab.submit(spec)
    body = lab.wait_for(experiment_id)
    assert body["status"] == "succeeded", body.get("error")
    assert body["attempts"] == 1
    assert_full_run_results(lab, experiment_id, spec, body)
    # the results live in PostgreSQL and the queue lived in Redis, not in ADVLAB_HOME
    from lab.store import open_store

    stored = open_store(lab_db).get_metrics(experiment_id, names=["test/clean_accuracy"])
    assert [p.step for p in stored["test/clean_accuracy"]] == list(range(0, 21, 2))
    assert not (lab.root / "home" / "broker").exists()
    queue = lab.env["ADVLAB_QUEUE"]
    bindings = redis.Redis.from_url(redis_url).smembers(f"_kombu.binding.{queue}")
    assert any(queue.encode() in member for member in bindings)
