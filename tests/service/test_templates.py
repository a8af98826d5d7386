"""Experiment templates: every experiment of the three papers has one, each validates, the API
lists and serves them, and the quickstart template shows what its sentence says."""

from __future__ import annotations

import json

import pytest

from advcore.spec import parse_spec
from service.templates import EXAMPLES, TEMPLATES
from devtools.measured import single_thread


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_spec_validates_and_says_what_it_shows(name):
    template = TEMPLATES[name]
    spec = parse_spec(template.spec()).resolve()
    assert spec.training.epochs >= 1
    assert template.shows.endswith(".") and len(template.shows) > 40
    assert template.paper[0] in "ABC"
    for other in template.compare_with:
        assert other.split()[0] in TEMPLATES


def test_templates_cover_every_experiment_of_the_papers():
    kinds = set()
    for template in TEMPLATES.values():
        spec = parse_spec(template.spec()).resolve()
        kinds.add((spec.data.kind, spec.training.mode, spec.training.labels))
    assert {("multi_cluster", "standard", "binary"), ("multi_cluster", "standard", "fine"),
            ("patch", "standard", "fine"), ("patch", "adversarial", "fine"),
            ("separated", "adversarial", "binary"), ("image", "standard", "binary"),
            ("image", "standard", "fine")} <= kinds
    widths = {tuple(parse_spec(t.spec()).learner.widths) for t in TEMPLATES.values()
              if t.sweep is not None}
    assert widths == {(16,), (256,), (2048,)}  # the width study


def test_get_templates_lists_every_template_with_its_spec(make_api):
    api = make_api()
    body = api.client.get("/v1/templates").json()
    assert [t["name"] for t in body["items"]] == list(TEMPLATES)
    first = body["items"][0]
    assert {"name", "title", "paper", "shows", "spec", "compare_with", "example"} <= set(first)


def test_get_one_template_returns_the_example_file_and_404s_unknown_names(make_api):
    api = make_api()
    response = api.client.get("/v1/templates/patch_adversarial")
    assert response.status_code == 200
    on_disk = json.loads((EXAMPLES / "patch_adversarial.json").read_text())
    assert response.json()["spec"] == on_disk
    missing = api.client.get("/v1/templates/nope")
    assert missing.status_code == 404 and "quickstart" in missing.json()["detail"]


def test_every_template_is_accepted_by_the_server_within_its_limits(make_api):
    api = make_api()
    for name in TEMPLATES:
        spec = api.client.get(f"/v1/templates/{name}").json()["spec"]
        response = api.client.post("/v1/experiments", json=spec)
        assert response.status_code == 202, (name, response.text)


def test_quickstart_shows_feature_averaging_and_robustness_lost_near_sqrt_d_over_k():
    from advcore.observe import CollectingObserver
    from advcore.run import run_experiment

    spec = parse_spec(TEMPLATES["quickstart"].spec())
    observer = CollectingObserver()
    with single_thread():
        summary = run_experiment(spec, observer).to_stored()
    assert summary["clean_accuracy"]["test"] == 1.0
    # each neuron spreads over its class's two clusters: cosines ~ 1/sqrt(2) on both
    cos = observer.matrix("cosine/cluster")  # final (16 neurons, 4 clusters); J+ = {0, 1}
    own = [sorted(row[:2] if i < 8 else row[2:]) for i, row in enumerate(cos)]
    averaged = [pair for pair in own if pair[0] > 0.4]
    assert len(averaged) >= 12, own  # most neurons average (a few lag on one cluster)
    assert sum(p[1] for p in averaged) / len(averaged) < 0.8
    robust = {(r["attack"], r["radius"]): r["accuracy"] for r in summary["robust_accuracy"]}
    for attack in ("pgd_l2", "feature_direction"):  # sqrt(d/k) = 5
        assert robust[(attack, 2.0)] == 1.0
        assert robust[(attack, 8.0)] < 0.1
