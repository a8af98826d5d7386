"""The HTTP API's happy paths, on SQLite and on PostgreSQL: the real app, a real migrated store,
real Celery messages in a filesystem broker (nothing consumes them). The worker's side of the
store is played by `run_fake_worker` (hand-made records through the real store methods)."""

from __future__ import annotations

import pytest

# fixtures (make_api, migrated_sqlite) are imported so that pytest registers them
from tests.service.api_support import SMALL_SPEC, run_fake_worker, spec

TASK = "advlab.run_experiment"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request, make_api):
    if request.param == "sqlite":
        return make_api()
    return make_api(request.getfixturevalue("pg_database")())


def submit(api, body=None, **headers):
    return api.client.post("/v1/experiments", json=body or SMALL_SPEC, headers=headers)


# ----------------------------------------------------------------------------- submit


def test_submit_answers_202_queued_with_links(api):
    r = submit(api)
    assert r.status_code == 202
    body = r.json()
    eid = body["id"]
    assert body["status"] == "queued"
    assert body["links"] == {"self": f"/v1/experiments/{eid}",
                             "metrics": f"/v1/experiments/{eid}/metrics",
                             "correlations": f"/v1/experiments/{eid}/correlations",
                             "cancel": f"/v1/experiments/{eid}/cancel",
                             "retry": f"/v1/experiments/{eid}/retry"}
    assert r.headers["location"] == f"/v1/experiments/{eid}"


def test_submit_stores_the_resolved_spec_with_hash_and_version(api):
    from advcore import __version__
    from advcore.spec import ExperimentSpec

    eid = submit(api).json()["id"]
    got = api.client.get(f"/v1/experiments/{eid}").json()
    assert got["spec"]["data"]["positive_clusters"] == [0, 1]  # default k//2 filled in
    assert got["spec"]["data"]["mean_norm"] == pytest.approx(20 ** 0.5)
    assert got["spec"]["training"]["loss"] == "logistic"
    assert got["spec_hash"] == ExperimentSpec.model_validate(SMALL_SPEC).spec_hash()
    assert got["advlab_version"] == __version__
    assert ExperimentSpec.model_validate(got["spec"]).spec_hash() == got["spec_hash"]
    assert (got["name"], got["tags"]) == (SMALL_SPEC["name"], SMALL_SPEC["tags"])
    assert got["progress"] == {"step": 0, "total": 5, "fraction": 0.0, "eta_s": None}


def test_submit_enqueues_one_message_for_the_new_id_after_its_row_is_committed(api):
    eid = submit(api).json()["id"]
    assert api.enqueue_log == [(eid, True)]
    assert api.messages() == [(TASK, eid)]


def test_idempotency_key_replay_returns_the_same_id_with_200_and_enqueues_nothing(api):
    first = submit(api, **{"Idempotency-Key": "k-1"})
    again = submit(api, **{"Idempotency-Key": "k-1"})
    other = submit(api, **{"Idempotency-Key": "k-2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert sorted(eid for _, eid in api.messages()) == sorted([first.json()["id"],
                                                               other.json()["id"]])
    assert api.rows() == 2


def test_idempotency_key_reused_for_a_different_spec_is_409(api):
    submit(api, **{"Idempotency-Key": "k"})
    r = submit(api, spec(**{"data.d": 30}), **{"Idempotency-Key": "k"})
    assert r.status_code == 409
    assert "Idempotency-Key" in r.json()["detail"]
    assert api.rows() == 1 and len(api.messages()) == 1


# ----------------------------------------------------------------------------- read and list


def test_get_shows_progress_summary_worker_and_timestamps_once_finished(api):
    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid, steps=5)
    got = api.client.get(f"/v1/experiments/{eid}").json()
    assert got["status"] == "succeeded"
    assert got["progress"]["step"] == 5 and got["progress"]["fraction"] == 1.0
    # a stored summary of any version reads as a RunSummary: its numbers, nothing invented
    assert got["summary"]["clean_accuracy"] == {"train": 1.0, "test": 0.9}
    assert got["summary"]["robust_accuracy"] == [] and got["summary"]["robust_min"] == []
    assert got["attempts"] == 1 and got["worker"] == "test-worker"
    assert got["created_at"] <= got["started_at"] <= got["finished_at"]


def test_running_job_reports_fraction_and_an_eta(api):
    eid = submit(api, spec(**{"training.epochs": 10})).json()["id"]
    run_fake_worker(api.store, eid, steps=4, finish=None)
    progress = api.client.get(f"/v1/experiments/{eid}").json()["progress"]
    assert progress["step"] == 4 and progress["total"] == 10
    assert progress["fraction"] == pytest.approx(0.4)
    assert progress["eta_s"] is not None and progress["eta_s"] >= 0


def test_list_filters_by_status_tag_name_substring_and_spec_field(api):
    a = submit(api, spec(name="alpha run", tags=["x"])).json()["id"]
    b = submit(api, spec(name="beta run", tags=["y"], **{"data.d": 40})).json()["id"]
    c = submit(api, spec(name="gamma", tags=["x"])).json()["id"]
    api.client.post(f"/v1/experiments/{c}/cancel")

    def ids(**params):
        r = api.client.get("/v1/experiments", params=params)
        assert r.status_code == 200, r.text
        return {item["id"] for item in r.json()["items"]}

    assert ids() == {a, b, c}
    assert ids(tag="x") == {a, c}
    assert ids(name="run") == {a, b}
    assert ids(status="canceled") == {c}
    assert ids(status=["queued", "canceled"]) == {a, b, c}
    assert ids(**{"spec.data.d": "40"}) == {b}
    assert ids(tag="x", status="queued") == {a}


def test_list_pages_with_an_opaque_cursor_newest_first_without_overlap(api):
    made = [submit(api, spec(name=f"run {i}")).json()["id"] for i in range(5)]
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/experiments", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    oldest = api.client.get("/v1/experiments", params={"order": "created_asc", "limit": 1})
    assert oldest.json()["items"][0]["id"] == made[0]


# ----------------------------------------------------------------------------- transitions


def test_cancel_of_a_queued_job_is_immediate(api):
    eid = submit(api).json()["id"]
    r = api.client.post(f"/v1/experiments/{eid}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "canceled"


def test_cancel_of_a_running_job_requests_the_worker_to_stop(api):
    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid, finish=None)
    r = api.client.post(f"/v1/experiments/{eid}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    exp = api.store.get_experiment(eid)
    assert api.store.heartbeat(eid, exp.attempts, 5) is True  # the worker sees the request


def test_retry_of_a_failed_job_creates_and_enqueues_a_new_experiment(api):
    old = submit(api).json()["id"]
    run_fake_worker(api.store, old, finish="failed")
    r = api.client.post(f"/v1/experiments/{old}/retry")
    assert r.status_code == 202
    new = r.json()["id"]
    assert new != old and r.json()["status"] == "queued"
    got = api.client.get(f"/v1/experiments/{new}").json()
    assert got["retry_of"] == old
    assert got["spec_hash"] == api.client.get(f"/v1/experiments/{old}").json()["spec_hash"]
    assert api.messages() == [(TASK, old), (TASK, new)]
    assert api.enqueue_log[-1] == (new, True)


def test_retry_of_a_succeeded_or_queued_job_is_409(api):
    done = submit(api).json()["id"]
    run_fake_worker(api.store, done)
    queued = submit(api).json()["id"]
    for eid in (done, queued):
        r = api.client.post(f"/v1/experiments/{eid}/retry")
        assert r.status_code == 409
        assert "only failed or canceled" in r.json()["detail"]
    assert api.rows() == 2


def test_delete_removes_the_experiment_and_its_data(api):
    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid)
    assert api.client.delete(f"/v1/experiments/{eid}").status_code == 204
    assert api.client.get(f"/v1/experiments/{eid}").status_code == 404
    assert api.client.get(f"/v1/experiments/{eid}/metrics").status_code == 404
    assert api.rows() == 0


def test_delete_of_a_running_job_cancels_it_then_deletes_it(api):
    from lab.store.base import StoreError

    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid, finish=None)
    assert api.client.delete(f"/v1/experiments/{eid}").status_code == 204
    assert api.rows() == 0
    with pytest.raises(StoreError):  # the worker's next write finds no current attempt
        api.store.heartbeat(eid, 1, 6)


# ----------------------------------------------------------------------------- results


def test_metrics_returns_series_by_name_and_seed_filtered_by_names_and_since_step(api):
    eid = submit(api, spec(seeds=[3, 4])).json()["id"]
    run_fake_worker(api.store, eid, steps=5, seeds=(3, 4))
    url = f"/v1/experiments/{eid}/metrics"
    everything = api.client.get(url).json()
    assert everything["experiment_id"] == eid
    assert {(s["name"], s["seed"]) for s in everything["series"]} == {
        (n, seed) for n in ("train/loss", "test/clean_accuracy", "corr/cluster/0",
                            "corr/cluster/1") for seed in (3, 4)}
    loss = api.client.get(url, params={"names": "train/loss", "seed": 4}).json()["series"]
    assert loss == [{"name": "train/loss", "seed": 4,
                     "points": [[s, pytest.approx(1 / (1 + s) + 4)] for s in range(6)]}]
    two = api.client.get(url, params=[("names", "train/loss,corr/cluster/0"),
                                      ("names", "test/clean_accuracy"), ("seed", "3"),
                                      ("since_step", "4")]).json()["series"]
    assert {s["name"] for s in two} == {"train/loss", "corr/cluster/0", "test/clean_accuracy"}
    assert all([p[0] for p in s["points"]] == [4, 5] for s in two)


def test_metrics_max_points_downsamples_each_series_keeping_first_and_last(api):
    from lab.store.base import MetricPoint

    eid = submit(api, spec(**{"training.epochs": 1000})).json()["id"]
    exp = api.store.start_attempt(eid, "w")
    values = [((step * 37) % 101) / 100 for step in range(1000)]
    api.store.add_metrics(eid, exp.attempts,
                          [MetricPoint("train/loss", s, v, 3) for s, v in enumerate(values)])
    r = api.client.get(f"/v1/experiments/{eid}/metrics",
                       params={"names": "train/loss", "max_points": 50})
    points = r.json()["series"][0]["points"]
    assert 4 <= len(points) <= 50
    assert points[0] == [0, values[0]] and points[-1] == [999, values[-1]]
    kept = [v for _, v in points]
    assert min(kept) == min(values) and max(kept) == max(values)
    full = api.client.get(f"/v1/experiments/{eid}/metrics", params={"names": "train/loss"})
    assert len(full.json()["series"][0]["points"]) == 1000


def test_correlations_lists_corr_trajectories_and_the_stored_matrices(api):
    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid, steps=5)
    body = api.client.get(f"/v1/experiments/{eid}/correlations").json()
    assert {s["name"] for s in body["series"]} == {"corr/cluster/0", "corr/cluster/1"}
    corr0 = next(s for s in body["series"] if s["name"] == "corr/cluster/0")
    assert corr0["points"] == [[s, pytest.approx(0.1 * s)] for s in range(6)]
    assert body["matrices"] == {"cosine/cluster": [0, 5]}


def test_correlations_with_a_step_returns_one_full_matrix_and_defaults_to_the_latest(api):
    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid, steps=5)
    url = f"/v1/experiments/{eid}/correlations"
    m0 = api.client.get(url, params={"step": 0, "name": "cosine/cluster"}).json()
    assert (m0["name"], m0["step"], m0["seed"], m0["rows"], m0["cols"]) == (
        "cosine/cluster", 0, 3, 3, 2)
    assert m0["values"] == [[0.0, pytest.approx(0.2)], [pytest.approx(0.3), pytest.approx(3.4)],
                            [pytest.approx(0.5), pytest.approx(0.6)]]
    assert m0["row_labels"] == ["+0", "+1", "-0"] and m0["col_labels"] == ["mu_0", "mu_1"]
    latest = api.client.get(url, params={"name": "cosine/cluster"}).json()
    assert latest["step"] == 5 and latest["values"][0][0] == pytest.approx(0.5)


def test_correlations_without_such_a_matrix_is_404(api):
    eid = submit(api).json()["id"]
    run_fake_worker(api.store, eid, steps=5)
    url = f"/v1/experiments/{eid}/correlations"
    for params in ({"step": 3, "name": "cosine/cluster"}, {"name": "cosine/robust"},
                   {"step": 0, "name": "cosine/cluster", "seed": 9}):
        r = api.client.get(url, params=params)
        assert r.status_code == 404, params
        assert "no matrix" in r.json()["detail"]


# ----------------------------------------------------------------------------- operations


def test_health_reports_database_and_broker_ok(api):
    r = api.client.get("/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert (r.json()["database"], r.json()["broker"]) == ("ok", "ok")


def test_prometheus_metrics_count_jobs_by_status_and_the_queue_depth(api):
    for _ in range(3):
        submit(api)
    done = submit(api).json()["id"]
    run_fake_worker(api.store, done)
    text = api.client.get("/metrics").text
    assert 'advlab_experiments{status="queued"} 3.0' in text
    assert 'advlab_experiments{status="succeeded"} 1.0' in text
    assert 'advlab_queue_depth{queue="advlab"} 4.0' in text  # four messages, nobody consumes them
    assert "advlab_job_duration_seconds_count 1.0" in text
    assert 'advlab_http_request_duration_seconds_count{method="POST",route="/v1/experiments"' \
           ',status="202"} 4.0' in text


def test_openapi_documents_every_route_with_a_summary_and_its_errors(api):
    doc = api.client.get("/openapi.json").json()
    routes = {(m.upper(), p): op for p, ops in doc["paths"].items() for m, op in ops.items()}
    expected = {("POST", "/v1/experiments"), ("GET", "/v1/experiments"),
                ("GET", "/v1/experiments/{experiment_id}"),
                ("DELETE", "/v1/experiments/{experiment_id}"),
                ("POST", "/v1/experiments/{experiment_id}/cancel"),
                ("POST", "/v1/experiments/{experiment_id}/retry"),
                ("GET", "/v1/experiments/{experiment_id}/metrics"),
                ("GET", "/v1/experiments/{experiment_id}/correlations"),
                ("GET", "/v1/health"), ("GET", "/metrics")}
    assert expected <= set(routes)
    assert all(routes[r].get("summary") and routes[r].get("description") for r in expected)
    assert {"409", "413", "422"} <= set(routes[("POST", "/v1/experiments")]["responses"])
    assert "404" in routes[("GET", "/v1/experiments/{experiment_id}")]["responses"]
