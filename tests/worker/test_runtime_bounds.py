"""A job is bounded while it runs: cancel and delete stop it inside a long evaluation, its
deadline and its memory cap end it `failed` with a reason, and it runs with its share of the
cores. `execute` against a real SQLite store, the job in its real child process."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from devtools.poll import poll
from lab.config import Settings
from tests.worker.conftest import small_spec
from worker.budget import budget_for
from worker.outcome import Outcome
from worker.placement import torch_threads, visible_gpus, worker_env
from worker.tasks import execute, warm_up


@pytest.fixture(scope="module", autouse=True)
def warm():
    """As a worker does at start: its imports (and the forkserver's) before the first job."""
    warm_up(Settings())


def runaway_spec() -> dict:
    """Minutes of PGD in the very first evaluation (10^4 steps x 50 restarts x 2 radii)."""
    spec = small_spec()
    spec["training"]["epochs"] = 100_000
    spec["evaluation"] = {"every": 1, "n_attack": 100, "attacks": [
        {"kind": "pgd", "norm": "l2", "radii": [1.0, 2.0], "steps": 10_000, "restarts": 50}]}
    return spec


def start(store, settings, job_id) -> tuple[threading.Thread, dict]:
    """execute() in a thread, as the Celery task runs it; waits until the job runs."""
    out: dict = {}

    def target():
        out["outcome"] = execute(job_id, store, settings, worker_name="w1")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    poll(lambda: store.get_experiment(job_id).status != "queued", timeout=120, every=0.05)
    time.sleep(1.0)  # well inside the first evaluation
    return thread, out


def test_cancel_stops_a_job_inside_a_long_evaluation(store, settings, make_job):
    job = make_job(runaway_spec())
    thread, out = start(store, settings, job.id)
    assert store.get_experiment(job.id).status == "running"
    store.request_cancel(job.id)
    thread.join(timeout=5.0)  # the worker looks every cancel_poll_s and kills the job at once
    assert not thread.is_alive(), "still running 5 s after the cancel"
    assert out["outcome"] is Outcome.CANCELED
    done = store.get_experiment(job.id)
    assert (done.status, done.error, done.attempts) == ("canceled", "canceled on request", 1)


def test_delete_of_a_running_job_stops_it_and_leaves_nothing(store, settings, make_job):
    job = make_job(runaway_spec())
    thread, out = start(store, settings, job.id)
    store.request_cancel(job.id)  # what DELETE does: cancel first, then delete
    store.delete_experiment(job.id)
    thread.join(timeout=60)
    assert out["outcome"] in (Outcome.STALE, Outcome.CANCELED)
    assert store.metric_names(job.id) == []


def test_a_job_past_its_deadline_fails_with_the_time_limit(store, settings, make_job):
    tight = settings.model_copy(update={"time_floor_s": 2.0, "time_safety": 1e-9})
    job = make_job(runaway_spec())
    assert execute(job.id, store, tight, worker_name="w1") is Outcome.FAILED
    failed = store.get_experiment(job.id)
    assert failed.error.startswith("time limit: estimated ")
    assert "GFLOP at 5 GFLOP/s), ran " in failed.error and failed.attempts == 1


def test_a_job_past_its_memory_cap_fails_out_of_memory_without_a_retry(store, settings, make_job):
    capped = settings.model_copy(update={"max_job_memory_bytes": 64 << 20})
    spec = small_spec()
    spec["data"].update(d=2000, n_train=30_000, n_test=100)  # 240 MB of training data
    job = make_job(spec)
    assert execute(job.id, store, capped, worker_name="w1") is Outcome.FAILED
    failed = store.get_experiment(job.id)
    assert failed.error.startswith("out of memory: estimated ")
    assert ", limit 64 MiB" in failed.error
    assert (failed.status, failed.attempts) == ("failed", 1)
    # the reaper never sees it: it is not running any more
    assert store.stale_running(older_than_s=0) == []


def _job_processes() -> list[int]:
    """Children of this process's forkserver: the running job processes."""
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server:
                kids.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return kids


def test_a_job_process_killed_by_the_system_fails_out_of_memory(store, settings, make_job):
    job = make_job(runaway_spec())
    thread, out = start(store, settings, job.id)
    (pid,) = _job_processes()
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer does
    thread.join(timeout=60)
    assert out["outcome"] is Outcome.FAILED
    failed = store.get_experiment(job.id)
    assert failed.error.startswith("out of memory: estimated ")
    assert "killed by the system" in failed.error and failed.attempts == 1


def test_a_job_runs_with_its_share_of_the_cores(store, settings, make_job):
    two_per_host = settings.model_copy(update={"workers_per_host": 2})
    job = make_job()
    assert execute(job.id, store, two_per_host, worker_name="w1") is Outcome.SUCCEEDED
    summary = store.get_experiment(job.id).summary
    assert summary["threads"] == torch_threads(two_per_host)


def test_a_canceled_jobs_heartbeat_no_longer_keeps_it_alive(store, make_job):
    job = make_job()
    attempt = store.start_attempt(job.id, "w1").attempts
    store.heartbeat(job.id, attempt, 1)
    store.request_cancel(job.id)
    before = store.get_experiment(job.id).heartbeat_at
    time.sleep(0.05)
    assert store.heartbeat(job.id, attempt, 2) is True
    assert store.get_experiment(job.id).heartbeat_at == before  # the reaper will end it
    stale = store.stale_running(older_than_s=0)
    assert [e.id for e in stale] == [job.id]
    assert store.requeue(job.id, attempt, max_attempts=3).status == "canceled"


@pytest.mark.parametrize("cores,workers,concurrency,explicit,expected", [
    (2, 1, 1, None, 2), (2, 2, 1, None, 1), (16, 2, 2, None, 4), (3, 4, 1, None, 1),
    (16, 4, 1, 3, 3)])
def test_threads_are_cores_divided_by_jobs_on_the_host(settings, cores, workers, concurrency,
                                                       explicit, expected):
    placed = settings.model_copy(update={"workers_per_host": workers,
                                         "worker_concurrency": concurrency,
                                         "torch_threads": explicit})
    assert torch_threads(placed, cores=cores) == expected


def test_serve_tells_its_workers_how_many_share_the_host(settings):
    from worker.launch import settings_env

    env = settings_env(settings, base={})  # every setting, workers_per_host=1 among them
    assert worker_env(0, 2, env)["ADVLAB_WORKERS_PER_HOST"] == "2"
    more = {**env, "ADVLAB_WORKERS_PER_HOST": "6"}  # other workers share the host too
    assert worker_env(1, 2, more)["ADVLAB_WORKERS_PER_HOST"] == "6"


def test_serve_pins_one_gpu_per_worker_when_there_are_several():
    env = worker_env(3, 4, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["ADVLAB_WORKERS_PER_HOST"] == "4"
    assert worker_env(0, 2, {"CUDA_VISIBLE_DEVICES": "5"})["CUDA_VISIBLE_DEVICES"] == "5"
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_budget_scales_with_the_estimate_between_floor_and_ceiling(settings):
    from advcore.spec import parse_spec

    small = parse_spec(small_spec()).resolve()
    big = parse_spec(runaway_spec()).resolve()
    loose = settings.model_copy(update={"time_floor_s": 1.0, "max_job_s": 3600.0})
    assert budget_for(small, None, loose).deadline_s == 1.0  # the floor
    assert budget_for(big, None, loose).deadline_s == 3600.0  # the ceiling
    gpu = budget_for(big, settings.gpu_queue, settings)
    assert gpu.gflops == settings.gpu_gflops
    assert budget_for(small, None, settings).memory_bytes == settings.memory_floor_bytes
