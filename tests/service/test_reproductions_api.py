"""/v1/reproductions on the real app and a real migrated store: the catalogue, 422 at `name`,
404 for unknown ids (and for sweeps that are no reproduction), 202 making one sweep whose
members are the entry's grid points with their seeds batched, and once the members succeed
(the worker played through the real store with summaries in advcore's shape) the verdict JSON
and a figure that decodes. The real training path: tests/advcore/test_reproductions.py and
tests/e2e/test_reproduce_cli.py."""

from __future__ import annotations

import io

import pytest

from advcore import reproductions as rep
from lab.store.base import MetricPoint


@pytest.fixture
def api(make_api):
    return make_api()


def test_catalogue_lists_every_entry_with_sizes_and_claims(api):
    r = api.client.get("/v1/reproductions")
    assert r.status_code == 200
    names = [e["name"] for e in r.json()["catalogue"]]
    assert names == list(rep.CATALOGUE)
    fa = r.json()["catalogue"][0]
    assert fa["sizes"]["quick"]["members"] == 2 and fa["sizes"]["quick"]["seeds"] == [0, 1, 2]
    assert {"key", "paper", "criterion"} <= set(fa["claims"][0])


def test_unknown_name_is_422_at_name_and_unknown_id_404(api):
    r = api.client.post("/v1/reproductions", json={"name": "nope", "size": "quick"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "name"]
    r = api.client.post("/v1/reproductions", json={"name": "feature_averaging", "size": "huge"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "size"]
    assert api.client.get("/v1/reproductions/no-such-id").status_code == 404
    assert api.client.get("/v1/reproductions/no-such-id/figure.png").status_code == 404
    assert api.rows() == 0
    # a plain sweep is no reproduction
    sweep = api.client.post("/v1/sweeps", json={"name": "plain", "base": rep.member_spec(
        rep.SEPARATION, "quick", {}), "grid": {}}).json()
    assert api.client.get(f"/v1/reproductions/{sweep['id']}").status_code == 404


def _seed_summary(seed: int, labels: str, params: dict) -> dict:
    dk, d2 = params["sqrt_d_k"], params["sqrt_d_2"]
    cliff = dk if labels == "binary" else d2
    cos = params["inv_sqrt_k_2"] if labels == "binary" else 0.97
    radii = [0.5 * dk, cliff * (1 + 0.01 * seed), 2 * d2]
    return {"seed": seed, "clean_accuracy": {"train": 1.0, "test": 1.0},
            "robust_min": [{"threat": "min_l2", "norm": "l2", "radius": r, "accuracy": a,
                            "attacks": ["pgd_l2"], "lowest": "pgd_l2"}
                           for r, a in zip(radii, [1.0, 0.1, 0.0])],
            "correlations": {"cluster": [cos] * int(params["k"])},
            "correlation_stats": {"cluster": {"mean": cos, "min": cos, "max": cos}}}


def test_post_makes_one_sweep_then_verdict_and_figure_once_members_succeed(api):
    from matplotlib.image import imread

    r = api.client.post("/v1/reproductions", json={"name": "feature_averaging", "size": "quick"})
    assert r.status_code == 202, r.text
    created = r.json()
    size = rep.FEATURE_AVERAGING.sizes["quick"]
    assert len(created["experiment_ids"]) == 2  # one batched job per grid point
    body = api.client.get(f"/v1/reproductions/{created['id']}").json()
    assert body["status"] == "queued" and body["verdict"] is None
    assert api.client.get(f"/v1/reproductions/{created['id']}/figure.png").status_code == 409
    store = api.store
    for exp_id in created["experiment_ids"]:
        exp = store.start_attempt(exp_id, "test-worker")
        assert exp.spec["seeds"] == size.seeds
        labels = exp.spec["training"]["labels"]
        store.add_metrics(exp_id, exp.attempts, [MetricPoint("corr/cluster/0", 1, 0.5, s)
                                                 for s in size.seeds])
        store.finish(exp_id, exp.attempts, "succeeded", summary={
            "clean_accuracy": {"test": 1.0},
            "seeds": [_seed_summary(s, labels, size.params) for s in size.seeds]})
    body = api.client.get(f"/v1/reproductions/{created['id']}").json()
    assert body["status"] == "succeeded"
    verdict = body["verdict"]
    assert verdict["holds"] is True, verdict["claims"]
    claim = verdict["claims"][0]
    assert set(claim) >= {"key", "claim", "ours", "paper", "criterion", "holds"}
    assert set(claim["ours"]) == {"mean", "std", "n", "per_seed"} and claim["ours"]["n"] == 3
    assert claim["ours"]["mean"] == pytest.approx(1.01, rel=1e-3)
    listed = api.client.get("/v1/reproductions").json()["reproductions"]
    assert [x["id"] for x in listed] == [created["id"]]
    png = api.client.get(f"/v1/reproductions/{created['id']}/figure.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert imread(io.BytesIO(png.content), format="png").shape[1] > 1000
    # the dashboard pages: the catalogue and this run, then its figure and verdict table
    listing = api.client.get("/reproductions")
    assert listing.status_code == 200
    assert all(f'data-name="{name}"' in listing.text for name in rep.CATALOGUE)
    assert f'href="/reproductions/{created["id"]}"' in listing.text
    assert "5 / 5 claims hold" in listing.text
    detail = api.client.get(f"/reproductions/{created['id']}")
    assert detail.status_code == 200
    assert f'src="/v1/reproductions/{created["id"]}/figure.png"' in detail.text
    assert detail.text.count('data-holds="true"') == len(verdict["claims"])
    assert api.client.get("/reproductions/no-such-id").status_code == 404
