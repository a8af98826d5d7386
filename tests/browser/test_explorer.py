"""The dashboard's explorer in a REAL headless Chromium (Debian's `chromium` via Playwright's
Python package; never `playwright install`) against a real API process and worker.

Two tiny runs finish; in the table the user selects both → Compare → one chart with one series
per run (read from the chart's data-series and uPlot's legend rows); the experiment page draws
its per-quantity charts; tags and notes edited on the page persist (checked over the API);
Retry on a canceled run and Delete of selected rows act (checked over the API); columns,
the radius choice and pages apply. Every page runs under the CSP without console errors and
without a failed request (the favicon included).
"""

from __future__ import annotations

import json

import httpx
import pytest

from devtools.stack import launch_stack, tiny_spec
from tests.browser.conftest import TIMEOUT_MS, require_browser, shot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_browser()
    stack = launch_stack(tmp_path_factory.mktemp("explorer"), {}, workers=1)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def runs(stack):
    """Two finished runs that differ in width (and a name each)."""
    ids = [stack.submit(tiny_spec(name=f"explorer w{w}", epochs=12, every=3) |
                        {"learner": {"kind": "two_layer_relu", "width": w}})
           for w in (8, 32)]
    for eid in ids:
        assert stack.wait_for(eid, timeout=300)["status"] == "succeeded"
    return ids


@pytest.fixture
def page(browser, stack, request):
    context = browser.new_context(base_url=stack.base_url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"JS error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" or "Content Security Policy" in msg.text else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
    page.problems = problems
    yield page
    shot(page, f"{request.node.name}-last")
    context.close()


def api_get(stack, path: str) -> httpx.Response:
    return httpx.get(stack.base_url + path, timeout=30)


def other_experiment_page(page, old_id: str) -> str:
    """The id of the experiment page the browser went to from `old_id`'s (a retry)."""
    handle = page.wait_for_function(
        "old => document.body && document.body.dataset.page === 'experiment' && "
        "document.body.dataset.id !== old && document.body.dataset.id", arg=old_id)
    return handle.json_value()


def select_rows(page, ids) -> None:
    for eid in ids:
        page.check(f'tr.exp-row[data-id="{eid}"] input.pick')
    page.wait_for_selector(f'#selected-count[data-count="{len(ids)}"]')


def test_select_two_runs_and_compare_overlays_one_series_per_run(page, stack, runs):
    page.goto("/")
    select_rows(page, runs)
    page.click("#compare-selected")
    page.wait_for_url("**/compare?ids=*")
    chart = "#compare-chart"
    page.wait_for_selector(f'{chart}[data-loaded="test/clean_accuracy"]')
    labels = json.loads(page.get_attribute(chart, "data-series"))
    assert len(labels) == 2 and all(eid[:6] in " ".join(labels) for eid in runs), labels
    assert all("width=" in label for label in labels), labels  # what differs names each line
    legend = page.eval_on_selector_all(f"{chart} .u-legend tr.u-series th",
                                       "ths => ths.map(t => t.textContent.trim())")
    assert [x for x in legend if x in labels] == labels, legend  # uPlot drew both series
    assert page.eval_on_selector(f"{chart} canvas", "c => c.width") > 300
    assert "learner.width" in page.inner_text("#spec-diff")
    shot(page, "explorer-1-compare")

    page.select_option("#compare-metric", "train/loss")  # any metric, overlaid the same way
    page.wait_for_selector(f'{chart}[data-loaded="train/loss"]')
    assert len(json.loads(page.get_attribute(chart, "data-series"))) == 2
    page.select_option("#compare-metric", "radius:min_l2")  # final robust accuracy vs radius
    page.wait_for_selector(f'{chart}[data-loaded="radius:min_l2"]')
    assert json.loads(page.get_attribute(chart, "data-series")) == labels
    xs = page.eval_on_selector(chart, "c => c.uplot.data[0]")
    assert xs == [1, 2], xs  # the attack's radii
    shot(page, "explorer-1b-compare-radius")
    assert page.problems == []


def test_experiment_page_draws_one_chart_per_quantity_and_adds_any_metric(page, stack, runs):
    page.goto(f"/experiments/{runs[0]}")
    page.wait_for_selector('#explorer[data-loaded="true"]')
    panels = page.eval_on_selector_all(".chart-panel", "ps => ps.map(p => p.dataset.panel)")
    assert {"loss", "clean", "robust-test", "corr"} <= set(panels), panels
    robust = json.loads(page.get_attribute('.chart-panel[data-panel="robust-test"] .chart',
                                           "data-series"))
    # all attacks together (min_l2) and the one attack (pgd_l2), at radii 1 and 2
    assert robust == ["min_l2 @ 1", "min_l2 @ 2", "pgd_l2 @ 1", "pgd_l2 @ 2"], robust
    page.select_option("#metric-pick", "test/clean_accuracy")
    page.click("#metric-add")
    page.wait_for_selector('.chart-panel[data-panel="metric:test/clean_accuracy"] canvas')
    shot(page, "explorer-2-experiment")
    assert page.problems == []


def test_tags_and_notes_edited_on_the_page_persist(page, stack, runs):
    page.goto(f"/experiments/{runs[1]}")
    page.click("#edit-meta summary")
    page.fill("#tags-input", "explorer, wide")
    page.fill("#notes-input", "the wide one\nlooks robust")
    page.click("#meta-save")
    page.wait_for_selector("#meta-result:text('saved')")
    body = api_get(stack, f"/v1/experiments/{runs[1]}").json()
    assert body["tags"] == ["explorer", "wide"] and body["notes"] == "the wide one\nlooks robust"
    page.reload()
    assert page.inner_text("#notes-view") == "the wide one\nlooks robust"
    assert "wide" in page.inner_text("#tags")
    page.goto("/?tag=wide&col=notes")
    assert page.inner_text(f'tr.exp-row[data-id="{runs[1]}"] td[data-col="notes"]').startswith(
        "the wide one")
    assert page.problems == []


def test_retry_and_delete_from_the_table_act_on_the_selected_runs(page, stack, runs):
    long = tiny_spec(name="explorer to cancel", epochs=100_000, every=1000)
    doomed = stack.submit(tiny_spec(name="explorer doomed", epochs=5, every=5))
    canceled = stack.submit(long)
    assert httpx.post(f"{stack.base_url}/v1/experiments/{canceled}/cancel",
                      timeout=30).status_code == 200
    stack.wait_for(canceled, {"canceled"})

    page.goto("/")
    select_rows(page, [canceled])
    page.click("#retry-selected")
    page.wait_for_selector('#action-result[data-done="1"]')
    retried = [e for e in api_get(stack, "/v1/experiments?limit=50").json()["items"]
               if e["retry_of"] == canceled]
    assert len(retried) == 1 and retried[0]["status"] in ("queued", "running"), retried
    page.wait_for_selector(f'tr.exp-row[data-id="{retried[0]["id"]}"]')  # the table shows it
    page.click("#clear-selected")

    select_rows(page, [doomed, retried[0]["id"]])
    page.click("#delete-selected")
    page.wait_for_selector('#action-result[data-done="2"]')
    for eid in (doomed, retried[0]["id"]):
        page.wait_for_selector(f'tr.exp-row[data-id="{eid}"]', state="detached")
        assert api_get(stack, f"/v1/experiments/{eid}").status_code == 404
    assert page.get_attribute("#selected-count", "data-count") == "0"
    shot(page, "explorer-3-after-delete")
    page.problems[:] = [p for p in page.problems if "404" not in p or "/v1/" not in p]
    assert page.problems == []


def test_retry_and_delete_buttons_on_the_experiment_page(page, stack):
    eid = stack.submit(tiny_spec(name="explorer page retry", epochs=100_000, every=1000))
    assert httpx.post(f"{stack.base_url}/v1/experiments/{eid}/cancel",
                      timeout=30).status_code == 200
    stack.wait_for(eid, {"canceled"})
    page.goto(f"/experiments/{eid}")
    page.click("#retry")
    new_id = other_experiment_page(page, eid)
    assert api_get(stack, f"/v1/experiments/{new_id}").json()["retry_of"] == eid
    page.click("#delete")
    page.wait_for_selector("#experiments")  # back on the table
    assert api_get(stack, f"/v1/experiments/{new_id}").status_code == 404
    assert page.problems == []


def test_columns_radius_and_pages(page, stack, runs):
    page.goto("/?col=spec.learner.width&col=duration_s&radius=largest&limit=25")
    row = f'tr.exp-row[data-id="{runs[0]}"]'
    assert page.inner_text(f'{row} td[data-col="spec.learner.width"]') == "8"
    assert "@2" in page.inner_text(f"{row} td.robust")  # largest radius of pgd l2 (1, 2)
    page.select_option("#radius", "smallest")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**radius=smallest**")
    assert "@1" in page.inner_text(f"{row} td.robust")
    assert page.inner_text(f'{row} td[data-col="spec.learner.width"]') == "8"  # columns kept
    for _ in range(26):  # more rows than a page of 25 holds
        stack.submit(tiny_spec(name="explorer filler", epochs=1, every=1) | {"device": "cpu"})
    page.goto("/?limit=25&name=explorer")
    assert len(page.query_selector_all("tr.exp-row")) == 25
    page.click("#page-next")
    page.wait_for_url("**cursor=**")
    assert 1 <= len(page.query_selector_all("tr.exp-row")) <= 25
    page.click("#page-first")
    page.wait_for_selector("tr.exp-row")
    assert page.problems == []


def test_favicon_is_served(stack):
    response = api_get(stack, "/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"


def test_with_tokens_the_session_edits_retries_and_deletes_only_its_own_runs(browser,
                                                                               tokens_stack):
    stack = tokens_stack
    alice, bob = stack.users["alice"], stack.users["bob"]

    def submit(headers) -> str:
        r = httpx.post(f"{stack.base_url}/v1/experiments", headers=headers, timeout=30,
                       json=tiny_spec(name="tokens explorer"))
        assert r.status_code == 202, r.text
        return r.json()["id"]

    mine, theirs = submit(alice), submit(bob)
    assert httpx.post(f"{stack.base_url}/v1/experiments/{mine}/cancel", headers=alice,
                      timeout=30).status_code == 200  # no worker: canceled at once
    context = browser.new_context(base_url=stack.base_url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"JS error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        page.goto(f"/login?next=/experiments/{mine}")
        page.fill("#token", alice["Authorization"].split(" ", 1)[1])
        page.click("#login-submit")
        page.wait_for_url(f"**/experiments/{mine}")
        page.click("#edit-meta summary")
        page.fill("#notes-input", "edited in a session")
        page.click("#meta-save")  # PATCH with the session cookie and the page's CSRF token
        page.wait_for_selector("#meta-result:text('saved')")
        got = httpx.get(f"{stack.base_url}/v1/experiments/{mine}", headers=bob, timeout=30)
        assert got.json()["notes"] == "edited in a session"

        page.goto(f"/experiments/{theirs}")  # bob's: readable, not editable
        assert page.query_selector("#meta-form") is None and page.query_selector("#delete") is None

        page.goto(f"/experiments/{mine}")
        page.click("#retry")
        retried = other_experiment_page(page, mine)
        page.click("#delete")
        page.wait_for_selector("#experiments")
        assert httpx.get(f"{stack.base_url}/v1/experiments/{retried}", headers=alice,
                         timeout=30).status_code == 404

        # the table's bulk delete answers per row: bob's job is refused and stays
        page.goto("/")
        select_rows(page, [theirs, mine])
        page.click("#delete-selected")
        page.wait_for_selector("#action-result[data-done]")
        assert page.get_attribute("#action-result", "data-done") == "1"
        assert "403" in page.inner_text("#action-result")
        assert httpx.get(f"{stack.base_url}/v1/experiments/{theirs}", headers=bob,
                         timeout=30).status_code == 200
        assert httpx.get(f"{stack.base_url}/v1/experiments/{mine}", headers=bob,
                         timeout=30).status_code == 404
        problems[:] = [p for p in problems if "403" not in p]  # the refused delete, as expected
        assert problems == []
    finally:
        context.close()
