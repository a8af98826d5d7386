"""GET /v1/compare?ids=: spec differences, summaries side by side, series aligned on steps."""

from __future__ import annotations

import pytest

from service.compare import flatten
from tests.service.results_support import cluster_spec, open_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    for r in open_results(tmp_path_factory.mktemp("compare")):
        r.submit("binary", cluster_spec(seeds=[0, 1]))
        r.submit("fine", cluster_spec(seeds=[0, 1], **{"training.labels": "fine",
                                                       "learner.width": 2}))
        r.submit("every3", cluster_spec(**{"evaluation.every": 3}))
        yield r


def _compare(results, *labels: str, **params):
    ids = ",".join(results.ids[label] for label in labels)
    return results.client.get("/v1/compare", params={"ids": ids, **params})


def test_spec_diff_names_exactly_the_paths_that_differ(results):
    body = _compare(results, "binary", "fine").json()
    diff = {d["path"]: d["values"] for d in body["spec_diff"]}
    a, b = results.ids["binary"], results.ids["fine"]
    assert diff["training.labels"] == {a: "binary", b: "fine"}
    assert diff["learner.width"] == {a: 8, b: 2}
    assert diff["training.loss"] == {a: "logistic", b: "cross_entropy"}  # resolved defaults
    assert set(diff) == {"training.labels", "learner.width", "training.loss"}


def test_summary_rows_put_each_experiments_final_numbers_side_by_side(results):
    body = _compare(results, "binary", "fine").json()
    rows = {r["key"]: r["values"] for r in body["summary"]}
    for label in ("binary", "fine"):
        exp = results.client.get(f"/v1/experiments/{results.ids[label]}").json()
        assert rows["test/clean_accuracy"][exp["id"]] == exp["summary"]["clean_accuracy"]["test"]
        pgd4 = [r for r in exp["summary"]["robust_accuracy"]
                if r["attack"] == "pgd_l2" and r["radius"] == 4][0]["accuracy"]
        assert rows["test/robust_accuracy/pgd_l2@4"][exp["id"]] == pgd4
        # the minimum over all attacks at that radius, never above any attack's own number
        own4 = [r["accuracy"] for r in exp["summary"]["robust_accuracy"] if r["radius"] == 4]
        assert rows["test/robust_accuracy/min_l2@4"][exp["id"]] <= min(own4)
    assert rows["fine/test/clean_accuracy"][results.ids["binary"]] is None
    assert [e["id"] for e in body["experiments"]] == [results.ids["binary"], results.ids["fine"]]


def test_series_are_aligned_on_the_union_of_steps_with_nulls_where_missing(results):
    body = _compare(results, "binary", "every3", names="train/loss").json()
    (series,) = body["series"]
    assert series["name"] == "train/loss"
    assert series["steps"] == [0, 2, 3, 4, 6]
    every2 = series["values"][results.ids["binary"]]
    every3 = series["values"][results.ids["every3"]]
    assert [v is None for v in every2] == [False, False, True, False, False]
    assert [v is None for v in every3] == [False, True, False, True, False]


def test_several_seeds_are_averaged_per_step_unless_one_seed_is_asked_for(results):
    experiment_id = results.ids["binary"]
    stored = results.store.get_metrics(experiment_id, names=["test/loss"])["test/loss"]
    at6 = {p.seed: p.value for p in stored if p.step == 6}
    mean = _compare(results, "binary", names="test/loss").json()["series"][0]
    assert mean["values"][experiment_id][-1] == pytest.approx((at6[0] + at6[1]) / 2)
    one = _compare(results, "binary", names="test/loss", seed=1).json()["series"][0]
    assert one["values"][experiment_id][-1] == pytest.approx(at6[1])


def test_an_unknown_id_is_404_naming_it_and_no_ids_is_422(results):
    response = results.client.get("/v1/compare", params={"ids": f"{results.ids['binary']},ghost"})
    assert response.status_code == 404 and "ghost" in response.json()["detail"]
    assert results.client.get("/v1/compare", params={"ids": ","}).status_code == 422
    assert results.client.get("/v1/compare").status_code == 422
    many = ",".join(f"id{i}" for i in range(21))
    assert results.client.get("/v1/compare", params={"ids": many}).status_code == 422


def test_flatten_indexes_lists_of_objects_and_keeps_lists_of_numbers():
    flat = flatten({"evaluation": {"attacks": [{"radii": [1, 2], "kind": "pgd"}]}, "seed": 0})
    assert flat == {"evaluation.attacks.0.radii": [1, 2], "evaluation.attacks.0.kind": "pgd",
                    "seed": 0}


def _plot_labels(fig) -> set[str]:
    return {line.get_label() for line in fig.axes[0].get_lines()}


def test_compare_plot_of_robust_accuracy_has_one_line_per_experiment_and_attack(results):
    from service.compare import compare_figure

    a, b = results.ids["binary"], results.ids["fine"]
    fig = compare_figure(results.store, [a, b], "robust_vs_radius")
    assert _plot_labels(fig) == {
        f"{a[:6]} width=8, labels=binary, loss=logistic · pgd_l2 (n=2)",
        f"{a[:6]} width=8, labels=binary, loss=logistic · feature_direction (n=2)",
        f"{b[:6]} width=2, labels=fine, loss=cross_entropy · pgd_l2 (n=2)",
        f"{b[:6]} width=2, labels=fine, loss=cross_entropy · feature_direction (n=2)",
        f"{a[:6]} width=8, labels=binary, loss=logistic · min_l2 (n=2)",  # all attacks
        f"{b[:6]} width=2, labels=fine, loss=cross_entropy · min_l2 (n=2)"}
    only_pgd = compare_figure(results.store, [a, b], "robust_vs_radius", attack="pgd_l2")
    (line,) = [ln for ln in only_pgd.axes[0].get_lines() if ln.get_label().startswith(a[:6])]
    summary = results.store.get_experiment(a).summary["robust_accuracy"]
    want = [r["accuracy"] for r in sorted(summary, key=lambda r: r["radius"])
            if r["attack"] == "pgd_l2"]
    assert list(line.get_xdata()) == [1.0, 2.0, 4.0]
    assert list(line.get_ydata()) == pytest.approx(want)  # seed means = the summary's numbers


def test_compare_plot_endpoint_renders_a_metric_and_409s_missing_data(results):
    ids = f"{results.ids['binary']},{results.ids['every3']}"
    png = results.client.get("/v1/compare/plots/test/clean_accuracy.png", params={"ids": ids})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = results.client.get("/v1/compare/plots/robust_vs_radius.svg", params={"ids": ids})
    assert svg.status_code == 200 and b"<svg" in svg.content[:2000]
    none = results.client.get("/v1/compare/plots/test/no_such_metric.png", params={"ids": ids})
    assert none.status_code == 409
    ghost = results.client.get("/v1/compare/plots/robust_vs_radius.png", params={"ids": "ghost"})
    assert ghost.status_code == 404


def test_the_client_fetches_overlay_and_experiment_plots_and_exports(results, tmp_path):
    """The client's handles on the same app in-process: images by suffix (png default) and
    tables written where asked."""
    from client.api import Client

    client = Client("http://testserver", retries=0)
    client._http = results.client  # the TestClient is an httpx.Client on the real app
    ids = [results.ids["binary"], results.ids["fine"]]
    png = client.compare_plot(ids, "test/clean_accuracy", tmp_path / "overlay.png")
    assert png.startswith(b"\x89PNG") and (tmp_path / "overlay.png").read_bytes() == png
    assert b"<svg" in client.compare_plot(ids, "robust_vs_radius", fmt="svg", seed=0)[:2000]
    exp = client.experiment(ids[0])
    assert repr(exp) == f"Experiment({ids[0]!r})" and exp.status == "succeeded"
    assert exp.plot("learning_curves").startswith(b"\x89PNG")
    table = exp.export(tmp_path / "series.csv").read_text()
    assert table.startswith("experiment_id,name,seed,step,value")
