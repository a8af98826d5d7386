"""Celery's own tools against a real worker on the real Redis broker: `celery -A lab.celery_app
inspect ping/active` (the CLI, in a subprocess, through the app module that imports no task code)
is answered by the running worker, and /metrics counts it among the live workers of its queue.
A queue name of its own on Redis db 0; the commands name the worker (`-d`), so other workers on
the same Redis never answer for it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import REPO, launch_stack, tiny_spec

pytestmark = [pytest.mark.redis, pytest.mark.slow]  # a worker's start-up: 20-60 s on 2 cores


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    queue = f"advlab-inspect-{uuid.uuid4().hex[:8]}"
    env = {"ADVLAB_BROKER_URL": redis_url, "ADVLAB_QUEUE": queue}
    stack = launch_stack(tmp_path_factory.mktemp("inspect"), env, workers=1)
    yield stack
    stack.close()
    client = redis.Redis.from_url(redis_url)
    client.delete(queue, f"_kombu.binding.{queue}")
    client.close()


def node_name(stack) -> str:
    argv = stack.procs["worker0"].args
    return argv[argv.index("-n") + 1]


def inspect(stack, command: str, node: str) -> subprocess.CompletedProcess:
    """`celery -A lab.celery_app inspect <command> -d <node> --json` as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "lab.celery_app", "inspect", command,
         "-d", node, "--json", "--timeout", "2"],
        cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=60)


def answer(stack, command: str, node: str, *, timeout: float = 120) -> dict:
    """The worker's reply to `command`, waiting for it to start consuming."""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = inspect(stack, command, node)
        if result.returncode == 0:
            return json.loads(result.stdout)
        if stack.procs["worker0"].poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(f"no reply to inspect {command}: {result and result.stdout} "
                         f"{result and result.stderr}\n{stack.log_text()[-4000:]}")


class _Seen(Exception):
    pass


def heartbeat_while_busy(stack, node: str, timeout: float = 30) -> dict:
    """The first periodic `worker-heartbeat` event of `node` on the broker's event stream."""
    from lab.config import Settings
    from lab.broker import make_celery

    app = make_celery(Settings(home=stack.root / "home", broker_url=stack.env["ADVLAB_BROKER_URL"],
                               queue=stack.env["ADVLAB_QUEUE"]))
    found: list[dict] = []

    def on_heartbeat(event: dict) -> None:
        if event.get("hostname") == node and "active" in event:
            found.append(event)
            raise _Seen

    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"worker-heartbeat": on_heartbeat})
        try:
            receiver.capture(limit=200, timeout=timeout, wakeup=False)
        except _Seen:
            return found[0]
    raise AssertionError(f"no heartbeat from {node} among 200 events")


def test_celery_inspect_ping_and_active_are_answered_by_the_running_worker(stack):
    node = node_name(stack)
    assert answer(stack, "ping", node) == {node: {"ok": "pong"}}

    experiment_id = stack.submit(tiny_spec(name="inspect me", epochs=100000, every=1000))
    stack.wait_for(experiment_id, {"running"})
    active = answer(stack, "active", node)[node]
    assert [task["args"] for task in active] == [[experiment_id]]
    assert active[0]["name"] == "advlab.run_experiment"

    # Flower's view: the busy worker keeps sending its heartbeat events
    beat = heartbeat_while_busy(stack, node)
    assert beat["active"] == 1, beat

    # /metrics: one live worker on this stack's queue, busy with a fresh heartbeat
    text = stack.client().get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("advlab_workers_alive", (("queue", stack.env["ADVLAB_QUEUE"]),))] == 1
    assert samples[("advlab_workers_busy", ())] == 1
    assert samples[("advlab_running_heartbeat_age_seconds_count", ())] == 1

    assert stack.client().post(f"/v1/experiments/{experiment_id}/cancel").status_code == 200
    assert stack.wait_for(experiment_id)["status"] == "canceled"
    assert answer(stack, "active", node) == {node: []}

