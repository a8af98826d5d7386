"""worker.tasks.execute and the StoreObserver against a real SQLite store and the real runner."""

from __future__ import annotations

import threading
import time
from collections import Counter

from advcore.observe import MatrixRecord, MetricRecord
from lab.store.base import MetricPoint
from lab.store.sql import SqlStore
from tests.worker.conftest import small_spec
from lab.queue import queue_depth
from worker.observer import StoreObserver
from worker.tasks import execute, readable_error

EVAL_STEPS = [0, 4, 8, 12]  # small_spec: 12 epochs, evaluated every 4 (and at 0)


def _points(store, experiment_id, name="train/loss"):
    return store.get_metrics(experiment_id, names=[name])[name]


def test_execute_runs_a_queued_job_to_succeeded_with_each_evaluation_stored_once(store, settings, make_job):
    job = make_job()
    assert execute(job.id, store, settings, worker_name="w1") == "succeeded"
    done = store.get_experiment(job.id)
    assert (done.status, done.attempts, done.worker, done.step) == ("succeeded", 1, "w1", 12)
    assert done.summary["clean_accuracy"]["train"] > 0.9 and done.summary["device"] == "cpu"
    for name in ("train/loss", "test/clean_accuracy", "corr/cluster/3", "weights/norm_max"):
        assert [p.step for p in _points(store, job.id, name)] == EVAL_STEPS
    assert store.matrix_steps(job.id) == {"cosine/cluster": EVAL_STEPS}
    assert len(store.get_matrix(job.id, "cosine/cluster").values) == 8  # width rows


def test_message_for_a_job_that_is_not_queued_is_ignored(store, settings, make_job):
    job = make_job()
    assert execute(job.id, store, settings, worker_name="w1") == "succeeded"
    before = _points(store, job.id)
    assert execute(job.id, store, settings, worker_name="w2") == "skipped"  # duplicate message
    after = store.get_experiment(job.id)
    assert (after.attempts, after.worker) == (1, "w1")
    assert _points(store, job.id) == before
    assert execute("no-such-id", store, settings, worker_name="w2") == "skipped"


def test_bad_spec_fails_fast_with_a_readable_error_naming_the_field(store, settings, make_job):
    bad = small_spec()
    bad["data"]["d"] = -3
    job = make_job(bad, raw=True)
    assert execute(job.id, store, settings, worker_name="w1") == "failed"
    failed = store.get_experiment(job.id)
    assert failed.status == "failed" and failed.attempts == 1
    assert "invalid spec" in failed.error and "data.multi_cluster.d" in failed.error
    assert store.metric_names(job.id) == []


def test_science_error_fails_the_job_with_the_exception_stored(store, settings, make_job,
                                                               monkeypatch, tmp_path):
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path / "empty"))
    job = make_job({**small_spec(), "data": {"kind": "image", "dataset": "mnist"},
                    "learner": {"kind": "mlp"}})
    assert execute(job.id, store, settings, worker_name="w1") == "failed"
    failed = store.get_experiment(job.id)
    assert failed.error.startswith("FileNotFoundError: data set 'mnist' not found")


def test_rerun_after_a_lost_attempt_replaces_the_partial_series(store, settings, make_job):
    job = make_job()
    first = store.start_attempt(job.id, "killed-worker")
    store.add_metrics(job.id, first.attempts, [MetricPoint("train/loss", 0, 9.0, 0),
                                               MetricPoint("train/loss", 4, 9.0, 0)])
    assert store.requeue(job.id, first.attempts, max_attempts=3).status == "queued"
    assert execute(job.id, store, settings, worker_name="w2") == "succeeded"
    done = store.get_experiment(job.id)
    assert done.attempts == 2
    points = _points(store, job.id)
    assert [p.step for p in points] == EVAL_STEPS
    assert 9.0 not in [p.value for p in points]


def test_observer_reports_progress_and_flushes_each_evaluation(store, make_job):
    job = make_job()
    running = store.start_attempt(job.id, "w1")
    seen = []
    observer = StoreObserver(store, job.id, running.attempts, batch=5,
                             progress=lambda step, total: seen.append((step, total)))
    observer.on_start(12, [0])
    observer.on_progress(1, 12)
    observer.on_metrics([MetricRecord("train/loss", 2, 0.5, 0)])  # an evaluation at step 2
    observer.on_progress(2, 12)  # flushes although the batch is not full
    assert seen == [(0, 12), (1, 12), (2, 12)] and not observer.should_stop()
    assert [p.step for p in _points(store, job.id)] == [2]


def test_worker_shutdown_hands_the_running_job_back_to_the_queue(store, settings, make_job):
    job = make_job()
    shutdown = threading.Event()
    shutdown.set()
    assert execute(job.id, store, settings, worker_name="w1", shutdown=shutdown) == "queued"
    back = store.get_experiment(job.id)
    assert (back.status, back.attempts, back.worker) == ("queued", 1, None)
    assert queue_depth(settings) == 1  # re-sent at once, not after stale_after_s
    assert execute(job.id, store, settings, worker_name="w2") == "succeeded"
    assert [p.step for p in _points(store, job.id)] == EVAL_STEPS


class CountingStore(SqlStore):
    """The real store, counting bulk writes."""

    def __init__(self, inner: SqlStore) -> None:
        self.__dict__.update(inner.__dict__)
        self.calls: Counter = Counter()

    def add_metrics(self, *args, **kwargs):
        self.calls["add_metrics"] += 1
        return super().add_metrics(*args, **kwargs)


def test_observer_writes_metrics_in_full_batches_until_an_evaluation_ends(store, make_job):
    job = make_job()
    counting = CountingStore(store)
    attempt = counting.start_attempt(job.id, "w1").attempts
    observer = StoreObserver(counting, job.id, attempt, batch=10)
    observer.on_start(100, [0])
    for epoch in range(1, 50):  # quiet epochs: nothing to write
        observer.on_progress(epoch, 100)
    assert counting.calls["add_metrics"] == 0
    observer.on_metrics([MetricRecord(f"m/{i}", 50, float(i), 0) for i in range(25)])
    assert counting.calls["add_metrics"] == 2  # two full batches of 10 went out at once
    observer.on_progress(50, 100)  # evaluation epoch: flush the rest
    assert counting.calls["add_metrics"] == 3
    assert len(store.metric_names(job.id)) == 25


def test_observer_of_a_reaped_attempt_stops_quietly_and_writes_nothing(store, make_job):
    job = make_job()
    old = store.start_attempt(job.id, "slow-worker").attempts
    store.requeue(job.id, old, max_attempts=3)
    new = store.start_attempt(job.id, "new-worker").attempts
    observer = StoreObserver(store, job.id, old, batch=2)
    observer.on_metrics([MetricRecord("train/loss", 1, 1.0, 0)] * 3)  # batch full: write fails
    observer.on_matrices([MatrixRecord("cosine/cluster", 1, 0, [[1.0]])])
    observer.on_progress(1, 10)
    assert observer.stale and observer.should_stop()
    assert store.metric_names(job.id) == []
    current = store.get_experiment(job.id)
    assert (current.attempts, current.worker, current.status) == (new, "new-worker", "running")


def test_readable_error_names_type_message_and_where():
    try:
        raise ValueError("radius must be positive")
    except ValueError as exc:
        text = readable_error(exc)
    assert text.startswith("ValueError: radius must be positive")
    assert "test_readable_error_names_type_message_and_where" in text


def test_repeated_shutdowns_never_exhaust_the_attempts_of_a_job(store, settings, make_job):
    job = make_job()
    shutdown = threading.Event()
    shutdown.set()
    for _ in range(settings.max_attempts + 1):
        assert execute(job.id, store, settings, worker_name="w", shutdown=shutdown) == "queued"
    assert store.get_experiment(job.id).status == "queued"
    assert execute(job.id, store, settings, worker_name="w") == "succeeded"
