"""Run-time bounds on a real server and a real Celery worker: a runaway evaluation is canceled
(or deleted) in seconds and the job queued behind it runs, with its share of the cores; a job
past its deadline fails `time limit`, one past its memory cap fails `out of memory` once, never
retried. Embedded (SQLite + filesystem broker) and the lab stack (PostgreSQL + Redis)."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis

from devtools.services import throwaway_pg_database
from devtools.stack import launch_stack, tiny_spec
from worker.placement import host_cores

WORKERS_PER_HOST = 2  # as `advlab serve --workers 2` tells its workers
LIVENESS = {"ADVLAB_HEARTBEAT_S": "0.2", "ADVLAB_WORKERS_PER_HOST": str(WORKERS_PER_HOST)}


def runaway_spec(name: str) -> dict:
    """Each evaluation is a minute of PGD (10^4 steps x 50 restarts x 2 radii), 21 of them:
    under the admission limit, far over any patience."""
    return tiny_spec(name=name, epochs=20, every=1, attacks=[
        {"kind": "pgd", "norm": "l2", "radii": [1.0, 2.0], "steps": 10_000, "restarts": 50}])


@pytest.fixture(scope="module", params=["embedded", pytest.param("lab", marks=[
    pytest.mark.postgres, pytest.mark.redis])])
def stack(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"bounds-{request.param}")
    if request.param == "embedded":
        stack = launch_stack(root, LIVENESS, workers=1)
        yield stack
        stack.close()
        return
    pg_url, redis_url = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")
    queue = f"advlab-bounds-{uuid.uuid4().hex[:8]}"
    with throwaway_pg_database("advlab_bounds", pg_url) as db:
        stack = launch_stack(root, {**LIVENESS, "ADVLAB_DATABASE_URL": db,
                                    "ADVLAB_BROKER_URL": redis_url, "ADVLAB_QUEUE": queue},
                             workers=1)
        yield stack
        stack.close()
    redis.Redis.from_url(redis_url).delete(queue, f"_kombu.binding.{queue}")


def _running(stack, experiment_id: str) -> None:
    """Wait until the worker is inside the job (its first evaluation started)."""
    stack.wait_for(experiment_id, {"running"}, timeout=180)


def test_a_canceled_runaway_ends_within_seconds_and_the_next_job_runs(stack):
    runaway = stack.submit(runaway_spec("runaway"))
    behind = stack.submit(tiny_spec(name="behind the runaway"))
    _running(stack, runaway)
    assert httpx.post(f"{stack.base_url}/v1/experiments/{runaway}/cancel").status_code == 200
    # 5 s: the worker reads the flag every second and kills the job's process at once; the
    # polling round trips of this test on a loaded machine are the rest of the deadline
    canceled = stack.wait_for(runaway, timeout=10)
    assert (canceled["status"], canceled["attempts"]) == ("canceled", 1)
    done = stack.wait_for(behind, timeout=180)
    assert done["status"] == "succeeded", done.get("error")
    # the job ran with its share of the cores: cores / workers on the host
    assert done["summary"]["threads"] == max(1, host_cores() // WORKERS_PER_HOST)


def test_deleting_a_running_runaway_frees_the_worker(stack):
    runaway = stack.submit(runaway_spec("runaway to delete"))
    behind = stack.submit(tiny_spec(name="behind the deleted runaway"))
    _running(stack, runaway)
    assert httpx.delete(f"{stack.base_url}/v1/experiments/{runaway}").status_code == 204
    assert httpx.get(f"{stack.base_url}/v1/experiments/{runaway}").status_code == 404
    done = stack.wait_for(behind, timeout=180)
    assert done["status"] == "succeeded", done.get("error")


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """Every deadline 3 s (floor 3 s, the estimate scaled to nothing); memory capped at 256 MiB
    (above what the runaway evaluation grows to, far below the 800 MB job)."""
    stack = launch_stack(tmp_path_factory.mktemp("tight"), {
        **LIVENESS, "ADVLAB_TIME_FLOOR_S": "3", "ADVLAB_TIME_SAFETY": "1e-9",
        "ADVLAB_MAX_JOB_MEMORY_BYTES": str(256 << 20)}, workers=1)
    yield stack
    stack.close()


def test_a_job_past_its_deadline_fails_with_the_time_limit(tight):
    runaway = tight.submit(runaway_spec("past its deadline"))
    failed = tight.wait_for(runaway, timeout=180)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error"].startswith("time limit: estimated "), failed["error"]


def test_a_job_past_its_memory_cap_fails_out_of_memory_once(tight):
    spec = tiny_spec(name="too big", d=2000, n=50_000, attacks=[])  # 800 MB of data (train and test)
    failed = tight.wait_for(tight.submit(spec), timeout=180)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error"].startswith("out of memory: estimated "), failed["error"]
    assert ", limit 256 MiB" in failed["error"]
