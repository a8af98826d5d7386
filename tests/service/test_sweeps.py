"""POST/GET /v1/sweeps on the real app and a real migrated store (SQLite and PostgreSQL): grid
expansion into member experiments, validation naming the grid path, one-transaction creation,
the aggregate table (mean ± sample std over seeds, from the members' summaries), status counts,
cancel, idempotency, export and the band plot. The worker's side is played through the real
store methods with hand-made summaries (no training; tests/e2e runs real ones)."""

from __future__ import annotations

import io
import json
import statistics

import pytest

from lab.store.base import MetricPoint
from advcore.summary import RunSummary
from service.sweeps import grid_points, set_path, sweep_status
from tests.service.api_support import spec

TASK = "advlab.run_experiment"
BASE = {**spec(), "training": {"epochs": 5, "optimizer": {"kind": "gd", "lr": 0.1},
                               "adversary": {"kind": "pgd", "radii": [0.5], "steps": 3}}}
MODES = {"training.mode": ["standard", "adversarial"]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request, make_api):
    if request.param == "sqlite":
        return make_api()
    return make_api(request.getfixturevalue("pg_database")())


def post_sweep(api, body=None, **headers):
    body = body if body is not None else {"name": "modes", "base": BASE, "grid": MODES,
                                          "seeds": [0, 1, 2]}
    return api.client.post("/v1/sweeps", json=body, headers=headers)


def finish_member(store, experiment_id, per_seed: list[dict], *, steps: int = 3) -> None:
    """Play a worker that trained the member's seeds and summarised each (advcore.run shape)."""
    exp = store.start_attempt(experiment_id, "test-worker")
    seeds = exp.spec.get("seeds") or [exp.spec["seed"]]
    points = [MetricPoint("test/clean_accuracy", step, per_seed[i]["clean_accuracy"]["test"]
                          * step / steps, seed)
              for i, seed in enumerate(seeds) for step in range(steps + 1)]
    store.add_metrics(experiment_id, exp.attempts, points)
    if len(seeds) == 1:
        summary = per_seed[0]
    else:
        summary = {"clean_accuracy": {"test": statistics.mean(
            s["clean_accuracy"]["test"] for s in per_seed)},
            "seeds": [{"seed": seed, **s} for seed, s in zip(seeds, per_seed)]}
    store.finish(experiment_id, exp.attempts, "succeeded", summary=summary)


def seed_summary(test_acc: float, robust: float) -> dict:
    return {"clean_accuracy": {"train": 1.0, "test": test_acc},
            "robust_accuracy": [{"attack": "pgd_l2", "radius": 1.0, "accuracy": robust}],
            "cosine_matrix": [[0.1, 0.7], [0.9, -0.2], [0.3, 0.4]]}


# ----------------------------------------------------------------------------- expansion


def test_grid_points_are_the_cartesian_product_first_path_slowest():
    points = list(grid_points({"a.x": [1, 2], "b": ["u", "v", "w"]}))
    assert points[:3] == [{"a.x": 1, "b": "u"}, {"a.x": 1, "b": "v"}, {"a.x": 1, "b": "w"}]
    assert len(points) == 6 and points[-1] == {"a.x": 2, "b": "w"}


def test_set_path_sets_nested_fields_and_list_elements_without_aliasing():
    doc = {"evaluation": {"attacks": [{"radii": [1]}]}, "training": {"adversary": None}}
    value = [2, 4]
    set_path(doc, "evaluation.attacks.0.radii", value)
    set_path(doc, "training.adversary.radii", [0.5])
    set_path(doc, "learner.width", 32)
    value.append(8)
    assert doc == {"evaluation": {"attacks": [{"radii": [2, 4]}]},
                   "training": {"adversary": {"radii": [0.5]}}, "learner": {"width": 32}}


def test_two_modes_by_three_seeds_batched_makes_two_members_training_all_seeds(api):
    r = post_sweep(api)
    assert r.status_code == 202, r.text
    body = r.json()
    assert len(body["experiment_ids"]) == 2 and body["status"] == "queued"
    assert r.headers["location"] == f"/v1/sweeps/{body['id']}"
    modes = []
    for eid in body["experiment_ids"]:
        exp = api.client.get(f"/v1/experiments/{eid}").json()
        assert exp["spec"]["seeds"] == [0, 1, 2]
        assert exp["spec"]["learner"]["width"] == BASE["learner"]["width"]  # base kept
        modes.append(exp["spec"]["training"]["mode"])
    assert modes == ["standard", "adversarial"]
    # every member committed before it was enqueued, and each sent exactly once
    assert sorted(api.enqueue_log) == sorted((eid, True) for eid in body["experiment_ids"])
    assert sorted(api.messages()) == sorted((TASK, eid) for eid in body["experiment_ids"])


def test_separate_seed_mode_makes_one_single_seed_member_per_point_and_seed(api):
    r = post_sweep(api, {"base": BASE, "grid": MODES, "seeds": [4, 5, 6],
                         "seed_mode": "separate"})
    assert r.status_code == 202, r.text
    sweep = api.client.get(f"/v1/sweeps/{r.json()['id']}").json()
    got = sorted((m["point"]["training.mode"], m["seeds"][0], m["experiment"]["spec"]["seed"],
                  m["experiment"]["spec"]["seeds"]) for m in sweep["members"])
    assert got == sorted((mode, s, s, None) for mode in MODES["training.mode"] for s in (4, 5, 6))


def test_grid_value_making_an_invalid_spec_is_422_naming_the_grid_path_and_stores_nothing(api):
    r = post_sweep(api, {"base": BASE, "grid": {"data.d": [20, 0]}, "seeds": [0]})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"][:3] == ["body", "grid", "data.d"] and "data.d" in err["msg"]
    assert api.rows() == 0 and api.messages() == []  # no half-created sweep


def test_unknown_grid_path_and_seed_in_grid_are_422(api):
    r = post_sweep(api, {"base": BASE, "grid": {"learner.depth": [1, 2]}})
    assert r.status_code == 422 and "learner.depth" in r.text
    r = post_sweep(api, {"base": BASE, "grid": {"seed": [1, 2]}})
    assert r.status_code == 422 and "seeds" in r.text


def test_a_sweep_over_max_sweep_members_is_413_naming_the_limit(make_api):
    api = make_api(max_sweep_members=3)
    r = post_sweep(api, {"base": BASE, "grid": {"learner.width": [4, 8]}, "seeds": [0, 1],
                         "seed_mode": "separate"})
    assert r.status_code == 413 and "max_sweep_members" in r.text
    assert api.rows() == 0


def test_idempotency_key_replay_returns_the_same_sweep_and_enqueues_nothing(api):
    first = post_sweep(api, **{"Idempotency-Key": "sweep-1"})
    again = post_sweep(api, **{"Idempotency-Key": "sweep-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["experiment_ids"] == first.json()["experiment_ids"]
    assert len(api.messages()) == 2 and api.rows() == 2
    other = post_sweep(api, {"base": BASE, "grid": MODES, "seeds": [9]},
                       **{"Idempotency-Key": "sweep-1"})
    assert other.status_code == 409


# ----------------------------------------------------------------------------- aggregate


def test_aggregate_has_mean_and_sample_std_over_seeds_for_each_grid_point(api):
    sweep_id = post_sweep(api).json()["id"]
    members = api.client.get(f"/v1/sweeps/{sweep_id}").json()["members"]
    numbers = {"standard": [(0.9, 0.2), (0.8, 0.1), (0.95, 0.3)],
               "adversarial": [(0.7, 0.6), (0.75, 0.5), (0.6, 0.55)]}
    for m in members:
        mode = m["point"]["training.mode"]
        finish_member(api.store, m["experiment"]["id"],
                      [seed_summary(*pair) for pair in numbers[mode]])
    sweep = api.client.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "succeeded" and sweep["counts"]["succeeded"] == 2
    assert [row["point"] for row in sweep["aggregate"]] == [{"training.mode": m}
                                                             for m in MODES["training.mode"]]
    for row in sweep["aggregate"]:
        pairs = numbers[row["point"]["training.mode"]]
        assert row["seeds"] == [0, 1, 2]
        clean = row["metrics"]["test/clean_accuracy"]
        robust = row["metrics"]["test/robust_accuracy/pgd_l2@1"]
        assert clean["n"] == robust["n"] == 3
        assert clean["mean"] == pytest.approx(statistics.mean(p[0] for p in pairs))
        assert clean["std"] == pytest.approx(statistics.stdev(p[0] for p in pairs))
        assert robust["mean"] == pytest.approx(statistics.mean(p[1] for p in pairs))
        assert robust["std"] == pytest.approx(statistics.stdev(p[1] for p in pairs))
        assert row["metrics"]["corr/cluster/1"]["mean"] == pytest.approx(0.7)  # max over neurons
    standard, adversarial = sweep["aggregate"]
    assert (adversarial["metrics"]["test/robust_accuracy/pgd_l2@1"]["mean"]
            > standard["metrics"]["test/robust_accuracy/pgd_l2@1"]["mean"])
    assert "test/clean_accuracy" in sweep["metric_names"]


def test_separate_members_aggregate_like_a_batched_member(api):
    r = post_sweep(api, {"base": BASE, "grid": {"training.mode": ["standard"]},
                         "seeds": [0, 1], "seed_mode": "separate"})
    sweep_id = r.json()["id"]
    for eid, acc in zip(r.json()["experiment_ids"], (0.5, 0.7)):
        finish_member(api.store, eid, [seed_summary(acc, 0.1)])
    (row,) = api.client.get(f"/v1/sweeps/{sweep_id}").json()["aggregate"]
    stats = row["metrics"]["test/clean_accuracy"]
    assert sorted(row["seeds"]) == [0, 1]
    assert (stats["mean"], stats["n"]) == (pytest.approx(0.6), 2)
    assert stats["std"] == pytest.approx(statistics.stdev([0.5, 0.7]))


def test_status_counts_follow_the_members_and_cancel_stops_the_unfinished(api):
    r = post_sweep(api)
    sweep_id, (done_id, queued_id) = r.json()["id"], r.json()["experiment_ids"]
    finish_member(api.store, done_id, [seed_summary(0.9, 0.1)] * 3)
    sweep = api.client.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "running"
    assert (sweep["counts"]["succeeded"], sweep["counts"]["queued"]) == (1, 1)
    assert [row["metrics"] != {} for row in sweep["aggregate"]] == [True, False]
    canceled = api.client.post(f"/v1/sweeps/{sweep_id}/cancel").json()
    assert canceled["status"] == "canceled"
    assert (canceled["counts"]["succeeded"], canceled["counts"]["canceled"]) == (1, 1)


def test_sweep_status_is_failed_only_once_every_member_is_done():
    counts = dict.fromkeys(("queued", "running", "succeeded", "failed", "canceled"), 0)
    assert sweep_status({**counts, "queued": 2}) == "queued"
    assert sweep_status({**counts, "failed": 1, "queued": 1}) == "running"
    assert sweep_status({**counts, "failed": 1, "succeeded": 1}) == "failed"
    assert sweep_status({**counts, "canceled": 1, "succeeded": 1}) == "canceled"


def test_summary_metrics_give_metric_style_keys_for_patch_and_fine_summaries():
    flat = RunSummary.from_stored({"clean_accuracy": {"train": 1.0, "test": 0.5},
                            "correlations": {"robust": [0.9, 0.8], "non_robust": [0.1, 0.2]},
                            "fine": {"clean_accuracy": {"test": 0.4}},
                            "robust_accuracy": [{"attack": "pgd_l2", "radius": 0.5,
                                                 "accuracy": 0.25}]}).metrics()
    assert flat == {"train/clean_accuracy": 1.0, "test/clean_accuracy": 0.5,
                    "corr/robust/0": 0.9, "corr/robust/1": 0.8, "corr/non_robust/0": 0.1,
                    "corr/non_robust/1": 0.2, "fine/test/clean_accuracy": 0.4,
                    "test/robust_accuracy/pgd_l2@0.5": 0.25}


def test_deleting_a_member_keeps_the_sweep_readable(api):
    r = post_sweep(api)
    sweep_id, (first, second) = r.json()["id"], r.json()["experiment_ids"]
    assert api.client.delete(f"/v1/experiments/{first}").status_code == 204
    sweep = api.client.get(f"/v1/sweeps/{sweep_id}").json()
    assert [m["experiment"]["id"] for m in sweep["members"]] == [second]
    assert sum(sweep["counts"].values()) == 1


def test_unknown_sweep_is_404(api):
    assert api.client.get("/v1/sweeps/nope").status_code == 404
    assert api.client.get("/v1/sweeps/nope/export.csv").status_code == 404
    assert api.client.get("/v1/sweeps/nope/plots/train/loss.png").status_code == 404


def test_sweeps_are_listed_newest_first_with_counts(api):
    first = post_sweep(api).json()["id"]
    second = post_sweep(api, {"name": "widths", "base": BASE,
                              "grid": {"learner.width": [4]}}).json()["id"]
    listed = api.client.get("/v1/sweeps").json()
    assert [s["id"] for s in listed] == [second, first]
    assert listed[0]["counts"]["queued"] == 1 and listed[1]["counts"]["queued"] == 2


# ----------------------------------------------------------------------------- export, plot


def test_sweep_export_has_grid_columns_and_every_members_points(api):
    import pandas as pd

    r = post_sweep(api)
    sweep_id, ids = r.json()["id"], r.json()["experiment_ids"]
    for eid in ids:
        finish_member(api.store, eid, [seed_summary(0.9, 0.1)] * 3, steps=3)
    csv = api.client.get(f"/v1/sweeps/{sweep_id}/export.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert list(frame.columns) == ["training.mode", "experiment_id", "name", "seed", "step",
                                   "value"]
    assert len(frame) == 2 * 3 * 4  # members x seeds x steps
    assert set(frame["training.mode"]) == {"standard", "adversarial"}
    parquet = api.client.get(f"/v1/sweeps/{sweep_id}/export.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == len(frame)
    aggregate = json.loads(table.schema.metadata[b"advlab.aggregate"])
    assert aggregate[0]["metrics"]["test/clean_accuracy"]["n"] == 3


def test_sweep_band_plot_is_a_png_once_data_exists_and_409_before(api):
    r = post_sweep(api)
    sweep_id = r.json()["id"]
    url = f"/v1/sweeps/{sweep_id}/plots/test/clean_accuracy.png"
    assert api.client.get(url).status_code == 409
    for eid in r.json()["experiment_ids"]:
        finish_member(api.store, eid, [seed_summary(0.9, 0.1)] * 3)
    png = api.client.get(url)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5_000
    svg = api.client.get(f"/v1/sweeps/{sweep_id}/plots/test/clean_accuracy.svg")
    assert svg.status_code == 200 and b"<svg" in svg.content[:500]


def test_two_path_grid_keeps_the_submitted_path_order_in_points_and_labels(api):
    grid = {"training.mode": ["standard", "adversarial"], "learner.width": [4, 8]}
    sweep_id = post_sweep(api, {"base": BASE, "grid": grid, "seeds": [0]}).json()["id"]
    sweep = api.client.get(f"/v1/sweeps/{sweep_id}").json()
    assert [g["path"] for g in sweep["grid"]] == list(grid)
    assert [list(m["point"]) for m in sweep["members"]] == [list(grid)] * 4
    assert [row["label"] for row in sweep["aggregate"]] == [
        "training.mode=standard, learner.width=4", "training.mode=standard, learner.width=8",
        "training.mode=adversarial, learner.width=4", "training.mode=adversarial, learner.width=8"]


def test_metric_names_sort_by_their_radius_as_a_number():
    from advcore.spec import metric_order

    names = ["test/robust_accuracy/pgd_l2@10", "test/clean_accuracy",
             "test/robust_accuracy/pgd_l2@2", "test/robust_accuracy/pgd_l2@0.5"]
    assert sorted(names, key=metric_order) == [
        "test/clean_accuracy", "test/robust_accuracy/pgd_l2@0.5",
        "test/robust_accuracy/pgd_l2@2", "test/robust_accuracy/pgd_l2@10"]
