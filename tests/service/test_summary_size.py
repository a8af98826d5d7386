"""The stored summary holds scalars only: a d = k = width = 1000 run (the spec that once made
GET return 21 MB) reads back in a few KB; its matrices are at their own endpoint."""

from __future__ import annotations

import json

import pytest

from tests.service.results_support import cluster_spec, open_results

SIZE_LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    for r in open_results(tmp_path_factory.mktemp("summary-size")):
        r.submit("wide", cluster_spec(**{
            "data.d": 1000, "data.k": 1000, "data.n_train": 40, "data.n_test": 20,
            "learner.width": 1000, "training.epochs": 2, "evaluation.every": 2,
            "evaluation.record": [],
            "evaluation.attacks": [{"kind": "pgd", "norm": "l2", "radii": [1, 4], "steps": 3},
                                   {"kind": "feature_direction", "radii": [1, 4]}]}))
        yield r


def test_a_thousand_wide_run_reads_back_in_under_16_kb(results):
    experiment_id = results.ids["wide"]
    got = results.client.get(f"/v1/experiments/{experiment_id}")
    assert got.status_code == 200 and got.json()["status"] == "succeeded"
    assert len(got.content) < SIZE_LIMIT, len(got.content)
    summary = got.json()["summary"]
    assert "cosine_matrix" not in summary and "cluster" not in summary["correlations"]
    stats = summary["correlation_stats"]["cluster"]  # 1000 clusters: mean / min / max only
    assert -1.0 <= stats["min"] <= stats["mean"] <= stats["max"] <= 1.0
    assert [(m["threat"], m["radius"]) for m in summary["robust_min"]] == [
        ("min_l2", 1.0), ("min_l2", 4.0)]
    listing = results.client.get("/v1/experiments", params={"limit": 1})
    (item,) = listing.json()["items"]
    assert item["id"] == experiment_id and len(json.dumps(item)) < SIZE_LIMIT


def test_the_final_matrix_is_at_its_endpoint_not_in_the_summary(results):
    experiment_id = results.ids["wide"]
    summary = results.client.get(f"/v1/experiments/{experiment_id}").json()["summary"]
    matrix = results.client.get(f"/v1/experiments/{experiment_id}/correlations",
                                params={"step": 2, "name": "cosine/cluster"}).json()
    assert (matrix["rows"], matrix["cols"]) == (1000, 1000)
    column_max = [max(col) for col in zip(*matrix["values"])]
    stats = summary["correlation_stats"]["cluster"]
    assert max(column_max) == pytest.approx(stats["max"], abs=1e-6)
    assert sum(column_max) / len(column_max) == pytest.approx(stats["mean"], abs=1e-6)
