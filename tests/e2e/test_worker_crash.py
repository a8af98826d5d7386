"""Job liveness with real processes on the embedded default: a SIGKILLed worker's job is
re-queued by a fresh worker's reaper and finished exactly once; a cancel stops a running job at
its next step. Short heartbeat / staleness settings come in through ADVLAB_* env."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.e2e.checks import assert_points_complete
from devtools.stack import launch_stack, tiny_spec

LIVENESS_ENV = {"ADVLAB_HEARTBEAT_S": "0.2", "ADVLAB_STALE_AFTER_S": "3",
                "ADVLAB_REAP_EVERY_S": "0.5"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = launch_stack(tmp_path_factory.mktemp("crash"), LIVENESS_ENV, workers=1)
    yield stack
    stack.close()


def _metric_steps(stack, experiment_id: str, name: str = "train/loss") -> list[int]:
    with stack.client() as client:
        body = client.get(f"/v1/experiments/{experiment_id}/metrics", params={"names": name}).json()
    return [step for series in body["series"] for step, _ in series["points"]]


def test_sigkilled_worker_job_is_finished_by_a_fresh_worker_without_duplicate_points(stack):
    # 15k GD epochs on 200 points: seconds of work, evaluated every 500 epochs
    long_spec = tiny_spec(name="survives a SIGKILL", epochs=15_000, every=500, attacks=[
        {"kind": "pgd", "norm": "l2", "radii": [1.0], "steps": 5}])
    victim = stack.submit(long_spec)
    # partial results of the first attempt are in the store before the kill
    stack.wait_for(victim, {"running"}, timeout=90,
                   until=lambda b: b["progress"]["step"] >= 2_000 and _metric_steps(stack, victim))
    behind = stack.submit(tiny_spec(name="queued behind the victim"))

    stack.kill("worker0", signal.SIGKILL)
    assert stack.get(victim)["status"] == "running"  # the broker does not know; the store does
    assert stack.get(behind)["status"] == "queued"

    stack.start_worker("worker1")
    done = stack.wait_for(victim, timeout=180)
    assert done["status"] == "succeeded", done.get("error")
    assert done["attempts"] == 2
    assert done["worker"].startswith("worker1")
    assert_points_complete(stack, victim, long_spec)  # every evaluation step exactly once

    other = stack.wait_for(behind, timeout=60)
    assert (other["status"], other["attempts"]) == ("succeeded", 1)  # nothing else lost


def test_cancel_stops_a_running_job_before_it_ends(stack):
    # every epoch is evaluated (with an attack), so every epoch sends a heartbeat
    slow_spec = tiny_spec(name="to be canceled", epochs=5_000, every=1, n=400, attacks=[
        {"kind": "pgd", "norm": "l2", "radii": [1.0, 2.0], "steps": 20}])
    experiment_id = stack.submit(slow_spec)
    stack.wait_for(experiment_id, {"running"}, timeout=90,
                   until=lambda b: b["progress"]["step"] >= 3)

    response = httpx.post(f"{stack.base_url}/v1/experiments/{experiment_id}/cancel", timeout=30)
    assert response.status_code in (200, 202), response.text
    step_at_cancel = response.json()["progress"]["step"]

    final = stack.wait_for(experiment_id, timeout=60)
    assert final["status"] == "canceled"
    stopped_at = final["progress"]["step"]
    # the job's process is killed within about a second of the request (worker.isolation), not
    # at a step boundary: it stops well before its end, and nothing is recorded once it settled
    # (progress is a heartbeat, at most one a second, so metrics may lead it by a few steps)
    assert step_at_cancel <= stopped_at
    recorded = max(_metric_steps(stack, experiment_id))
    time.sleep(2.0)
    assert max(_metric_steps(stack, experiment_id)) == recorded
    assert recorded < slow_spec["training"]["epochs"]
