"""The dashboard's server side (real app and store, SQLite): every page renders with the security
headers, user text is escaped, filters and sorts apply, and the pages point at the API
endpoints their JS and images use. The browser test (tests/browser) drives the same pages in a
real Chromium."""

from __future__ import annotations

import html as html_lib
import json
import re

import pytest

from service.experiment_plots import PLOTS
from service.templates import TEMPLATES
from tests.service.api_support import SMALL_SPEC, run_fake_worker, spec


@pytest.fixture
def api(make_api):
    return make_api()


def submit(api, body=None) -> str:
    r = api.client.post("/v1/experiments", json=body or SMALL_SPEC)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def assert_secure_html(response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    assert "<script>" not in html and " onclick=" not in html and " style=" not in html
    return html


def test_every_page_renders_with_security_headers(api):
    eid = submit(api)
    run_fake_worker(api.store, eid)
    sweep = api.client.post("/v1/sweeps", json={"base": SMALL_SPEC,
                                                 "grid": {"learner.width": [4, 8]}}).json()
    for path in ("/", "/ui/rows", f"/experiments/{eid}", "/sweeps", f"/sweeps/{sweep['id']}",
                 "/submit", "/submit?template=patch_standard"):
        assert_secure_html(api.client.get(path))


def test_experiment_names_are_html_escaped(api):
    submit(api, spec(name="<img src=x onerror=alert(1)>"))
    html = assert_secure_html(api.client.get("/"))
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_table_shows_status_progress_tags_and_key_results_and_filters_by_status(api):
    done = submit(api, spec(name="finished-one"))
    run_fake_worker(api.store, done)
    submit(api, spec(name="waiting-one"))
    html = assert_secure_html(api.client.get("/"))
    assert "finished-one" in html and "waiting-one" in html
    row = re.search(r'<tr class="exp-row" data-id="' + done + r'".*?</tr>', html, re.S).group(0)
    assert 'data-status="succeeded"' in row and "90.0%" in row  # summary test accuracy
    assert '<progress max="5" value="5">' in row and "feature-averaging" in row
    only = assert_secure_html(api.client.get("/", params={"status": "queued"}))
    assert "waiting-one" in only and "finished-one" not in only


def test_sort_by_name_orders_rows_alphabetically(api):
    for name in ("charlie", "alpha", "bravo"):
        submit(api, spec(name=name))
    html = assert_secure_html(api.client.get("/ui/rows", params={"sort": "name"}))
    names = re.findall(r'class="exp-link" href="/experiments/\w+">(\w+)<', html)
    assert names == ["alpha", "bravo", "charlie"]


def test_detail_page_has_spec_summary_plot_images_and_a_live_hook(api):
    eid = submit(api)
    queued = assert_secure_html(api.client.get(f"/experiments/{eid}"))
    assert 'id="cancel"' in queued and 'data-terminal="false"' in queued
    run_fake_worker(api.store, eid)
    html = assert_secure_html(api.client.get(f"/experiments/{eid}"))
    assert 'data-terminal="true"' in html and 'id="cancel"' not in html
    for name in ("learning_curves", "correlations", "cosine"):
        src = f"/v1/experiments/{eid}/plots/{name}.png"
        assert f' src="{src}"' in html  # the image's src, not its data-src
        assert api.client.get(src).status_code == 200
    # a figure is asked for exactly when its plot has data: no 409 in the browser's console
    for name in PLOTS:
        src = f"/v1/experiments/{eid}/plots/{name}.png"
        asked = f' src="{src}"' in html
        assert api.client.get(src).status_code == (200 if asked else 409), name
    assert f' src="/v1/experiments/{eid}/plots/robust_vs_radius.png"' not in html  # no attack
    assert "&#34;multi_cluster&#34;" in html or "&quot;multi_cluster&quot;" in html
    assert "Clean accuracy (test)" in html


def test_sweep_page_shows_the_aggregate_and_a_band_plot(api):
    sweep = api.client.post("/v1/sweeps", json={"base": SMALL_SPEC, "seeds": [3, 4],
                                                 "grid": {"learner.width": [4, 8]}}).json()
    for eid in sweep["experiment_ids"]:
        run_fake_worker(api.store, eid, seeds=(3, 4))
    html = assert_secure_html(api.client.get(f"/sweeps/{sweep['id']}"))
    assert "learner.width=4" in html and "learner.width=8" in html
    band = re.search(r'id="band"[^>]*src="([^"]+)"', html).group(1)
    assert band.endswith("/plots/test/clean_accuracy.png")
    assert api.client.get(band).status_code == 200
    compare = html_lib.unescape(re.search(r'id="compare-members" href="([^"]+)"', html).group(1))
    assert compare == "/compare?ids=" + ",".join(sweep["experiment_ids"])
    assert_secure_html(api.client.get(compare))


def test_static_files_are_served_with_their_type_and_nothing_else_is(api):
    js = api.client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert api.client.get("/static/..%2Fapi%2Froutes%2Fdashboard.py").status_code == 404
    assert api.client.get("/static/missing.js").status_code == 404
    vendored = api.client.get("/static/vendor/uplot.iife.min.js")
    assert vendored.status_code == 200 and "uPlot" in vendored.text
    assert api.client.get("/static/vendor%2F..%2Fapp.js").status_code == 404
    icon = api.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_submit_pages_default_sweep_is_accepted_for_every_template(api, name):
    html = assert_secure_html(api.client.get(f"/submit?template={name}"))
    spec_json = html_lib.unescape(re.search(r'<textarea id="spec"[^>]*>(.*?)</textarea>', html,
                                            re.S).group(1))
    grid = json.loads(html_lib.unescape(re.search(r'<input id="grid"[^>]*value="([^"]*)"',
                                                  html).group(1)))
    r = api.client.post("/v1/sweeps?dry_run=true", json={
        "name": "form default", "base": json.loads(spec_json), "grid": grid, "seeds": [0, 1, 2],
        "seed_mode": "batched"})
    assert r.status_code == 200, (name, grid, r.text[:500])


def _row_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="exp-row" data-id="(\w+)"', html)


def test_the_table_pages_through_every_experiment_newest_first(api):
    ids = [submit(api, spec(name=f"run{i}")) for i in range(30)]
    first = assert_secure_html(api.client.get("/", params={"limit": 25}))
    assert _row_ids(first) == ids[::-1][:25]
    older = re.search(r'id="page-next" href="([^"]+)"', first).group(1)
    second = assert_secure_html(api.client.get(html_lib.unescape(older)))
    assert _row_ids(second) == ids[::-1][25:] and 'id="page-next"' not in second
    assert 'id="page-first"' in second
    # an in-memory sort pages by number
    by_name = assert_secure_html(api.client.get("/", params={"sort": "name", "limit": 25,
                                                              "page": 2}))
    assert len(_row_ids(by_name)) == 5 and 'id="page-prev"' in by_name


def test_chosen_columns_show_spec_fields_and_summary_values(api):
    eid = submit(api, spec(**{"learner.width": 12}))
    run_fake_worker(api.store, eid)
    api.client.patch(f"/v1/experiments/{eid}", json={"notes": "<b>note</b>"})
    html = assert_secure_html(api.client.get("/", params={
        "col": ["spec.learner.width", "train_accuracy", "notes", "spec.no.such", "bogus"]}))
    row = re.search(r'<tr class="exp-row" data-id="' + eid + r'".*?</tr>', html, re.S).group(0)
    assert re.search(r'data-col="spec.learner.width"[^>]*>12<', row)
    assert re.search(r'data-col="train_accuracy"[^>]*>100.0%<', row)
    assert "&lt;b&gt;note&lt;/b&gt;" in row  # escaped
    assert re.search(r'data-col="spec.no.such"[^>]*>–<', row)
    assert 'data-col="bogus"' not in html


def test_robust_accuracy_at_the_smallest_largest_or_a_named_radius():
    from advcore.summary import RunSummary
    from service.table_view import radius_choices, robust_at

    summary = RunSummary.model_validate({
        "clean_accuracy": {"train": 1.0, "test": 0.9},
        "robust_min": [{"threat": "min_l2", "norm": "l2", "radius": r, "accuracy": a,
                        "attacks": ["pgd_l2"], "lowest": "pgd_l2"} for r, a in ((2.0, 0.7), (0.0, 0.9), (8.0, 0.0))]})
    assert robust_at(summary, "smallest") == ("min_l2@2", 0.7)  # smallest positive radius
    assert robust_at(summary, "largest") == ("min_l2@8", 0.0)
    assert robust_at(summary, "min_l2@0") == ("min_l2@0", 0.9)
    assert robust_at(summary, "min_l2@5") == ("", None)
    assert robust_at(None, "smallest") == ("", None)

    class Row:  # what radius_choices reads
        def __init__(self, summary):
            self.summary = summary
    assert list(radius_choices([Row(summary), Row(None)])) == [
        "smallest", "largest", "min_l2@0", "min_l2@2", "min_l2@8"]


def test_compare_page_lists_the_runs_their_differences_and_the_metrics_to_overlay(api):
    a, b = submit(api, spec(**{"learner.width": 4})), submit(api, spec(**{"learner.width": 8}))
    for eid in (a, b):
        run_fake_worker(api.store, eid)
    html = assert_secure_html(api.client.get("/compare", params={"ids": f"{a},{b}"}))
    assert 'data-ids="' + a + "," + b + '"' in html
    assert "learner.width" in html and "<option selected>test/clean_accuracy</option>" in html
    labels = json.loads(html_lib.unescape(re.search(r'data-labels="([^"]+)"', html).group(1)))
    assert set(labels) == {a, b} and "width=4" in labels[a]
    assert '<script src="/static/vendor/uplot.iife.min.js" defer></script>' in html
    assert api.client.get("/compare", params={"ids": "nope"}).status_code == 404
    assert api.client.get("/compare").status_code == 422
