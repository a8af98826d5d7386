"""GET /metrics parsed as Prometheus text: the operational families (per-queue depth, active rows
by queue, busy workers, heartbeat age, re-queues, process metrics) and request latencies under
route templates. The real app on a migrated store with a filesystem broker nobody consumes; the
worker's side of the store is played through the real store methods."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.broker import make_celery, supports_monitoring
from lab.config import Settings
from tests.service.api_support import SMALL_SPEC, spec


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request, make_api):
    if request.param == "sqlite":
        return make_api()
    return make_api(request.getfixturevalue("pg_database")())


def scrape(api) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} for every sample of /metrics."""
    r = api.client.get("/metrics")
    assert r.status_code == 200, r.text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def one(samples: dict, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def submit(api, body=None) -> str:
    r = api.client.post("/v1/experiments", json=body or SMALL_SPEC)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_metrics_report_queues_workers_heartbeats_requeues_and_the_process(api):
    cpu = [submit(api) for _ in range(3)]
    gpu = submit(api, spec(device="cuda"))
    store = api.store

    first = store.start_attempt(cpu[0], "worker-a@host")  # running, fresh heartbeat
    store.heartbeat(cpu[0], first.attempts, 1)
    lost = store.start_attempt(cpu[1], "worker-b@host")  # lost once, re-queued, running again
    store.requeue(cpu[1], lost.attempts, max_attempts=3)
    again = store.start_attempt(cpu[1], "worker-b@host")
    assert again.attempts == 2

    m = scrape(api)
    # the broker's messages per configured queue: nothing consumed them
    assert one(m, "advlab_queue_depth", queue="advlab") == 3
    assert one(m, "advlab_queue_depth", queue="gpu") == 1
    # the store's view by routed queue
    assert one(m, "advlab_experiments_active", queue="advlab", status="queued") == 1
    assert one(m, "advlab_experiments_active", queue="advlab", status="running") == 2
    assert one(m, "advlab_experiments_active", queue="gpu", status="queued") == 1
    assert one(m, "advlab_experiments_active", queue="gpu", status="running") == 0
    assert one(m, "advlab_workers_busy") == 2
    assert one(m, "advlab_running_heartbeat_age_seconds_count") == 2
    assert one(m, "advlab_running_heartbeat_age_seconds_bucket", le="+Inf") == 2
    assert 0 <= one(m, "advlab_running_heartbeat_age_max_seconds") < 3600
    assert one(m, "advlab_experiments_requeued") == 1
    assert one(m, "advlab_experiment_requeues") == 1
    # the filesystem broker carries no remote control: no census, so no workers_alive family
    assert "advlab_workers_alive" not in m
    # the process itself
    assert one(m, "process_resident_memory_bytes") > 0
    assert one(m, "process_cpu_seconds_total") > 0
    assert one(m, "process_open_fds") > 0
    assert any(labels for labels in m["python_info"])
    assert gpu not in str(m)


def test_request_latency_is_labelled_by_route_template_for_api_and_dashboard(make_api):
    api = make_api()
    eid = submit(api)
    assert api.client.get(f"/v1/experiments/{eid}").status_code == 200
    assert api.client.get(f"/experiments/{eid}").status_code == 200  # dashboard page
    assert api.client.get("/").status_code == 200
    assert api.client.get("/no/such/page/" + eid).status_code == 404

    counts = scrape(api)["advlab_http_request_duration_seconds_count"]
    routes = {dict(labels)["route"]: value for labels, value in counts.items()}
    assert routes["/v1/experiments/{experiment_id}"] == 1
    assert routes["/experiments/{experiment_id}"] == 1
    assert routes["/"] == 1
    assert routes["/v1/experiments"] == 1
    assert routes["other"] == 1  # a path no route matches
    assert not any(eid in route for route in routes)  # templates, never ids


def test_remote_control_and_events_are_on_only_where_the_broker_carries_them(tmp_path):
    def conf(url: str):
        settings = Settings(home=tmp_path, broker_url=url)
        return supports_monitoring(settings), make_celery(settings).conf

    for url in ("redis://127.0.0.1:6379/0", "amqp://guest:guest@127.0.0.1:5672//"):
        on, c = conf(url)
        assert on and c.worker_enable_remote_control and c.worker_send_task_events
        assert c.task_send_sent_event
    for url in ("filesystem://", f"sqla+sqlite:///{tmp_path}/broker.db"):
        on, c = conf(url)
        assert not on and not c.worker_enable_remote_control and not c.worker_send_task_events


def test_the_tools_app_module_loads_without_task_code(tmp_path):
    """`celery -A lab.celery_app ...` (inspect, Flower) imports no worker, torch or API code."""
    probe = ("import sys, lab.celery_app as m; m.app.loader.import_default_modules(); "
             "assert m.app.conf.include == []; "
             "print(sorted(k for k in sys.modules if k.split('.')[0] in "
             "('worker', 'torch', 'advcore', 'service')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVLAB_")}
    env["ADVLAB_HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).parents[2],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
