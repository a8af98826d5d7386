"""SqlStore against real databases: SQLite in a temp dir and the session's PostgreSQL database,
both migrated with Alembic (never create_all). Each test works on its own experiments (unique
tags), so the module-scoped stores can be shared."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import timezone

import pytest
import sqlalchemy as sa

from lab.store import open_store
from lab.store.base import (
    CorrelationMatrix, ExperimentFilter, IllegalTransition, MetricPoint, NotFound,
    SchemaOutOfDate, StaleAttempt,
)
from lab.store.migrate import upgrade


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store')}/advlab.db"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade("head", url)
    s = open_store(url)
    yield s
    s.close()


def new(store, *, tag: str | None = None, name: str = "exp", spec: dict | None = None,
        total_steps: int = 10, **kw):
    exp, created = store.create_experiment(
        name=name, tags=[tag or uuid.uuid4().hex], spec=spec or {"data": {"kind": "multi_cluster"}},
        spec_hash="h" * 64, total_steps=total_steps, **kw)
    assert created
    return exp


def running(store, **kw):
    exp = new(store, **kw)
    return store.start_attempt(exp.id, "w1")


def series(name: str, values, seed: int = 0, start: int = 0) -> list[MetricPoint]:
    return [MetricPoint(name=name, step=start + i, value=float(v), seed=seed)
            for i, v in enumerate(values)]


def count_rows(store, table: str, experiment_id: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE experiment_id = :e"),
                            {"e": experiment_id}).scalar_one()


# ---------------------------------------------------------------------------- experiments


def test_create_then_get_returns_queued_experiment_with_utc_timestamps(store):
    exp = new(store, name="fa", spec={"data": {"kind": "patch", "d": 20}})
    got = store.get_experiment(exp.id)
    assert got == exp
    assert (got.status, got.attempts, got.step, got.total_steps) == ("queued", 0, 0, 10)
    assert got.spec == {"data": {"kind": "patch", "d": 20}}
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset().total_seconds() == 0
    assert got.created_at.tzinfo == timezone.utc


def test_same_idempotency_key_returns_the_existing_experiment(store):
    key = uuid.uuid4().hex
    first, created = store.create_experiment(name="a", tags=[], spec={}, spec_hash="x",
                                             total_steps=1, idempotency_key=key)
    again, created_again = store.create_experiment(name="b", tags=[], spec={}, spec_hash="y",
                                                   total_steps=1, idempotency_key=key)
    assert created and not created_again
    assert again.id == first.id and again.name == "a"


def test_unknown_id_raises_not_found(store):
    with pytest.raises(NotFound):
        store.get_experiment("nope")
    with pytest.raises(NotFound):
        store.delete_experiment("nope")
    with pytest.raises(NotFound):
        store.request_cancel("nope")


def test_retry_of_an_unknown_experiment_raises_not_found(store):
    with pytest.raises(NotFound):
        store.create_experiment(name="r", tags=[], spec={}, spec_hash="x", total_steps=1,
                                retry_of="missing")


@pytest.mark.parametrize("order", ["created_desc", "created_asc"])
def test_cursor_pagination_visits_every_experiment_once_in_order(store, order):
    tag = uuid.uuid4().hex
    made = [new(store, tag=tag).id for _ in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = store.list_experiments(ExperimentFilter(tag=tag), limit=3, cursor=cursor, order=order)
        seen += [e.id for e in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == (made[::-1] if order == "created_desc" else made)


def test_list_filters_by_status_tag_name_hash_and_spec_fields(store):
    tag = uuid.uuid4().hex
    patch = new(store, tag=tag, name="Patch run", spec={"data": {"kind": "patch", "d": 200},
                                                        "training": {"adversarial": True}})
    other = new(store, tag=tag, name="cluster run", spec={"data": {"kind": "multi_cluster", "d": 50}})
    store.start_attempt(other.id, "w")

    def ids(**kw):
        return {e.id for e in store.list_experiments(ExperimentFilter(tag=tag, **kw)).items}

    assert ids() == {patch.id, other.id}
    assert ids(status=["running"]) == {other.id}
    assert ids(name_contains="patch") == {patch.id}  # case-insensitive
    assert ids(spec_fields={"data.kind": "patch"}) == {patch.id}
    assert ids(spec_fields={"data.d": "50"}) == {other.id}
    assert ids(spec_fields={"training.adversarial": "true"}) == {patch.id}
    assert ids(spec_fields={"data.kind": "image"}) == set()
    assert ids(spec_hash="nope") == set()
    assert store.list_experiments(ExperimentFilter(tag=uuid.uuid4().hex)).items == []


def test_counts_by_status_counts_each_status(store):
    before = store.counts_by_status()
    new(store)
    running(store)
    after = store.counts_by_status()
    assert after["queued"] - before["queued"] == 1
    assert after["running"] - before["running"] == 1
    assert set(after) == {"queued", "running", "succeeded", "failed", "canceled"}


def test_delete_removes_experiment_and_all_its_points_and_matrices(store):
    exp = running(store)
    store.add_metrics(exp.id, 1, series("train/loss", range(50)))
    store.add_matrices(exp.id, 1, [CorrelationMatrix("cosine/cluster", 1, 0, [[1.0]])])
    store.delete_experiment(exp.id)
    with pytest.raises(NotFound):
        store.get_experiment(exp.id)
    assert [count_rows(store, t, exp.id) for t in
            ("metric_points", "metric_series", "metric_blocks", "correlation_matrices")] == [0] * 4


# ---------------------------------------------------------------------------- status machine


def test_cancel_of_a_queued_job_cancels_it_at_once(store):
    exp = new(store)
    canceled = store.request_cancel(exp.id)
    assert canceled.status == "canceled" and canceled.finished_at is not None
    assert store.start_attempt(exp.id, "w") is None


def test_cancel_of_a_running_job_is_reported_by_the_next_heartbeat(store):
    exp = running(store)
    assert store.heartbeat(exp.id, 1, 3) is False
    assert store.request_cancel(exp.id).status == "running"
    assert store.heartbeat(exp.id, 1, 4) is True
    assert store.finish(exp.id, 1, "canceled").status == "canceled"


def test_cancel_of_a_finished_job_is_an_illegal_transition(store):
    exp = running(store)
    store.finish(exp.id, 1, "succeeded", summary={"x": 1})
    with pytest.raises(IllegalTransition):
        store.request_cancel(exp.id)


def test_start_attempt_runs_a_queued_job_once(store):
    exp = new(store)
    started = store.start_attempt(exp.id, "w1")
    assert (started.status, started.attempts, started.worker) == ("running", 1, "w1")
    assert started.started_at is not None and started.heartbeat_at is not None
    assert store.start_attempt(exp.id, "w2") is None  # already running elsewhere


def test_finish_success_stores_summary_with_non_finite_numbers_as_null(store):
    exp = running(store, total_steps=40)
    done = store.finish(exp.id, 1, "succeeded", summary={"loss": float("nan"), "acc": [1.0, 0.5]})
    assert done.status == "succeeded" and done.step == 40 and done.finished_at is not None
    assert store.get_experiment(exp.id).summary == {"loss": None, "acc": [1.0, 0.5]}
    with pytest.raises(ValueError):
        store.finish(exp.id, 1, "running")


def test_stale_running_lists_jobs_whose_heartbeat_is_older_than_the_threshold(store):
    exp = running(store)
    assert exp.id in {e.id for e in store.stale_running(-1.0)}  # cutoff in the future
    assert exp.id not in {e.id for e in store.stale_running(3600.0)}


def test_of_many_workers_racing_for_one_job_exactly_one_starts_it(store):
    exp = new(store)
    barrier = threading.Barrier(10)
    results: list = []

    def grab(i: int) -> None:
        barrier.wait()
        results.append(store.start_attempt(exp.id, f"w{i}"))

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 10 and len(winners) == 1 and winners[0].attempts == 1
    assert store.get_experiment(exp.id).worker == winners[0].worker


def test_writes_for_a_deleted_experiment_raise_stale_attempt(store):
    exp = running(store)
    store.delete_experiment(exp.id)
    with pytest.raises(StaleAttempt):
        store.add_metrics(exp.id, 1, series("train/loss", [1.0]))
    with pytest.raises(StaleAttempt):
        store.heartbeat(exp.id, 1, 1)


def test_requeue_puts_a_lost_job_back_and_only_once(store):
    exp = running(store)
    again = store.requeue(exp.id, 1, max_attempts=3)
    assert (again.status, again.attempts, again.worker) == ("queued", 1, None)
    with pytest.raises(StaleAttempt):  # a second reaper loses the race
        store.requeue(exp.id, 1, max_attempts=3)


def test_requeue_fails_the_job_once_max_attempts_is_reached(store):
    exp = running(store)
    failed = store.requeue(exp.id, 1, max_attempts=1)
    assert failed.status == "failed" and "attempts" in failed.error and failed.finished_at


def test_requeue_of_a_cancel_requested_job_cancels_it(store):
    exp = running(store)
    store.request_cancel(exp.id)
    assert store.requeue(exp.id, 1, max_attempts=3).status == "canceled"


def test_rerun_after_a_crash_replaces_the_partial_series(store):
    exp = running(store)
    store.add_metrics(exp.id, 1, series("train/loss", [9.0] * 30))  # crashed after 30 steps
    store.add_matrices(exp.id, 1, [CorrelationMatrix("cosine/cluster", 5, 0, [[9.0]])])
    store.requeue(exp.id, 1, max_attempts=3)
    second = store.start_attempt(exp.id, "w2")
    assert second.attempts == 2
    assert store.get_metrics(exp.id) == {} and store.matrix_steps(exp.id) == {}
    store.add_metrics(exp.id, 2, series("train/loss", range(100)))
    got = store.get_metrics(exp.id)["train/loss"]
    assert [p.step for p in got] == list(range(100))  # no duplicates, nothing missing
    assert [p.value for p in got] == [float(v) for v in range(100)]


def test_writes_of_a_reaped_attempt_raise_stale_attempt_and_store_nothing(store):
    exp = running(store)
    store.requeue(exp.id, 1, max_attempts=3)
    for write in (lambda: store.add_metrics(exp.id, 1, series("train/loss", [1.0])),
                  lambda: store.add_matrices(exp.id, 1, [CorrelationMatrix("c", 1, 0, [[1.0]])]),
                  lambda: store.heartbeat(exp.id, 1, 1),
                  lambda: store.finish(exp.id, 1, "succeeded")):
        with pytest.raises(StaleAttempt):
            write()
    store.start_attempt(exp.id, "w2")
    with pytest.raises(StaleAttempt):  # the zombie of attempt 1 beside the live attempt 2
        store.add_metrics(exp.id, 1, series("train/loss", [1.0]))
    assert count_rows(store, "metric_points", exp.id) == 0
    assert store.get_experiment(exp.id).status == "running"


# ---------------------------------------------------------------------------- metrics


def test_metrics_come_back_sorted_by_seed_and_step_with_nan_kept(store):
    exp = running(store)
    store.add_metrics(exp.id, 1, series("a", [3, 2, 1], seed=1) + series("a", [5, 4], seed=0)
                      + [MetricPoint("b", 0, float("nan"), 0)])
    got = store.get_metrics(exp.id)
    assert [(p.seed, p.step, p.value) for p in got["a"]] == [
        (0, 0, 5.0), (0, 1, 4.0), (1, 0, 3.0), (1, 1, 2.0), (1, 2, 1.0)]
    assert math.isnan(got["b"][0].value)
    assert store.metric_names(exp.id) == ["a", "b"]
    assert list(store.get_metrics(exp.id, names=["b"])) == ["b"]
    assert [p.step for p in store.get_metrics(exp.id, since_step=1, seed=1)["a"]] == [1, 2]


def test_writes_larger_than_one_batch_store_every_point(store):
    exp = running(store)
    n = 3 * store.metric_batch + 7
    store.add_metrics(exp.id, 1, series("train/loss", range(n)))
    assert len(store.get_metrics(exp.id)["train/loss"]) == n


@pytest.mark.parametrize("max_points", [1, 2, 3, 4, 7, 50, 999])
def test_downsampling_keeps_at_most_max_points_and_first_last_min_max(store, max_points):
    exp = running(store)
    n = 5000
    # a wiggly decay with its extremes planted mid-series, on a second seed shifted in value
    values = [math.exp(-i / 1500) + 0.05 * math.sin(i * 0.7) for i in range(n)]
    values[1234], values[3210] = 7.5, -3.25
    store.add_metrics(exp.id, 1, series("m", values, seed=0, start=10)
                      + series("m", [v + 1 for v in values], seed=1, start=10))
    got = store.get_metrics(exp.id, max_points=max_points)["m"]
    for seed, offset in ((0, 0.0), (1, 1.0)):
        pts = [p for p in got if p.seed == seed]
        steps = [p.step for p in pts]
        assert 1 <= len(pts) <= max_points
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        assert all(p.value == values[p.step - 10] + offset for p in pts)  # real rows only
        must = [(10, values[0] + offset), (n + 9, values[-1] + offset),
                (3220, -3.25 + offset), (1244, 7.5 + offset)][:max_points]
        assert all((p.step, p.value) in {(q.step, q.value) for q in pts} for p in
                   [MetricPoint("m", s, v, seed) for s, v in must])
    if max_points >= 50:  # enough room: the shape is kept with close to max_points points
        assert len([p for p in got if p.seed == 0]) >= max_points * 0.9


def test_downsampling_holds_for_series_written_in_small_out_of_order_chunks(store):
    exp = running(store)
    values = [((i * 37) % 101) / 10 for i in range(700)]  # min 0.0 at step 0, max 10.0 mid-way
    values[350] = float("nan")
    chunks = [series("m", values[i:i + 7], start=i) for i in range(0, 700, 7)]
    for chunk in chunks[::-1]:  # the worker's pattern (a few points per call), steps descending
        store.add_metrics(exp.id, 1, chunk)
    pts = store.get_metrics(exp.id, max_points=10)["m"]
    assert len(pts) <= 10 and pts[0].step == 0 and pts[-1].step == 699
    finite = [p.value for p in pts if not math.isnan(p.value)]
    assert min(finite) == 0.0 and max(finite) == 10.0
    assert [p.step for p in pts] == sorted(p.step for p in pts)


def test_downsampling_returns_short_series_unchanged(store):
    exp = running(store)
    store.add_metrics(exp.id, 1, series("m", range(20)))
    assert store.get_metrics(exp.id, max_points=20) == store.get_metrics(exp.id)


def test_downsampling_with_since_step_stays_within_the_range(store):
    exp = running(store)
    store.add_metrics(exp.id, 1, series("m", [float(i % 17) for i in range(3000)]))
    pts = store.get_metrics(exp.id, max_points=100, since_step=2000)["m"]
    assert len(pts) <= 100 and pts[0].step == 2000 and pts[-1].step == 2999
    assert {p.value for p in pts} >= {0.0, 16.0}


# ---------------------------------------------------------------------------- matrices


def test_matrices_round_trip_as_float32_with_labels_and_latest_step_by_default(store):
    exp = running(store)
    m1 = [[0.25, -0.5, 1.0], [0.125, 0.0, -1.0]]
    store.add_matrices(exp.id, 1, [
        CorrelationMatrix("cosine/cluster", 10, 0, m1, ["+0", "-0"], ["mu_0", "mu_1", "mu_2"]),
        CorrelationMatrix("cosine/cluster", 20, 0, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),
        CorrelationMatrix("cosine/cluster", 20, 1, [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]),
    ])
    first = store.get_matrix(exp.id, "cosine/cluster", step=10)
    assert first.values == m1 and first.row_labels == ["+0", "-0"]
    assert first.col_labels == ["mu_0", "mu_1", "mu_2"]
    latest = store.get_matrix(exp.id, "cosine/cluster")
    assert (latest.step, latest.seed) == (20, 0)
    assert latest.values[1][2] == pytest.approx(0.6, abs=1e-7)  # float32 storage
    assert store.get_matrix(exp.id, "cosine/cluster", seed=1).values[0] == [1.0, 1.0, 1.0]
    assert store.get_matrix(exp.id, "cosine/cluster", step=15) is None
    assert store.matrix_steps(exp.id) == {"cosine/cluster": [10, 20]}


def test_the_same_matrix_step_written_twice_keeps_the_later_one(store):
    exp = running(store)
    store.add_matrices(exp.id, 1, [CorrelationMatrix("c", 1, 0, [[1.0]])])
    store.add_matrices(exp.id, 1, [CorrelationMatrix("c", 1, 0, [[2.0]])])
    assert store.get_matrix(exp.id, "c").values == [[2.0]]


# ---------------------------------------------------------------------------- schema, concurrency


def test_open_store_refuses_a_database_that_is_not_migrated(tmp_path):
    with pytest.raises(SchemaOutOfDate):
        open_store(f"sqlite:///{tmp_path}/empty.db")


def test_fifty_concurrent_workers_on_sqlite_never_see_database_is_locked(tmp_path):
    url = f"sqlite:///{tmp_path}/busy.db"
    upgrade("head", url)
    store = open_store(url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def job(i: int) -> None:
        try:
            barrier.wait()
            exp, _ = store.create_experiment(name=f"c{i}", tags=["busy"], spec={}, spec_hash="x",
                                             total_steps=3)
            attempt = store.start_attempt(exp.id, f"w{i}").attempts
            for step in range(3):
                store.add_metrics(exp.id, attempt, series("train/loss", [i] * 40, start=40 * step))
                store.heartbeat(exp.id, attempt, step)
            store.finish(exp.id, attempt, "succeeded", summary={"i": i})
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        page = store.list_experiments(ExperimentFilter(tag="busy"), limit=100)
        assert len(page.items) == 50 and {e.status for e in page.items} == {"succeeded"}
        assert all(len(store.get_metrics(e.id)["train/loss"]) == 120 for e in page.items)
    finally:
        store.close()
