"""The dashboard in a REAL headless Chromium (Debian's `chromium`, driven by Playwright's Python
package through `executable_path`; never `playwright install`), against a real API process and a
real worker (embedded stack: SQLite + filesystem broker).

Load the dashboard, submit a template from the submit page, watch the experiment's row reach
`succeeded`, open its detail page and see the plots rendered (img naturalWidth > 0); then a
small sweep from the same page. Screenshots go to test-artifacts/ (and $OUT when set).
Under CI=true a missing Chromium or Playwright FAILS the test; elsewhere it skips.
"""

from __future__ import annotations

import json

import pytest

from devtools.stack import launch_stack
from tests.browser.conftest import TIMEOUT_MS, require_browser, shot


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_browser()
    stack = launch_stack(tmp_path_factory.mktemp("browser"), {}, workers=1)
    yield stack
    stack.close()


@pytest.fixture
def page(browser, stack, request):
    context = browser.new_context(base_url=stack.base_url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"JS error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if "Content Security Policy" in msg.text else None)
    page.problems = problems
    yield page
    shot(page, f"{request.node.name}-last")
    context.close()


def small_template_spec(page) -> dict:
    """The template's spec from the form, made small enough for a test (fewer epochs, points)."""
    spec = json.loads(page.input_value("#spec"))
    spec["name"] = "browser quickstart"
    spec["training"]["epochs"] = 40
    spec["evaluation"]["every"] = 4
    spec["data"].update(n_train=200, n_test=100)
    for attack in spec["evaluation"]["attacks"]:
        attack["radii"] = attack["radii"][:3]
    return spec


def loaded_plots(page) -> dict[str, int]:
    return page.eval_on_selector_all(
        "#plots img", "imgs => Object.fromEntries(imgs.map(i => [i.alt, i.naturalWidth]))")


def test_submit_a_template_watch_it_succeed_and_see_its_plots(page, stack):
    page.goto("/")
    assert page.title().startswith("Experiments")
    page.goto("/submit?template=quickstart")
    assert "feature averaging" in page.inner_text("p.shows").lower()
    page.fill("#spec", json.dumps(small_template_spec(page), indent=2))
    shot(page, "1-submit")
    page.click("#submit-experiment")
    page.wait_for_url("**/experiments/*")
    experiment_id = page.url.rstrip("/").rsplit("/", 1)[1]

    # the detail page follows the run (SSE; it re-renders itself on the `end` event)
    page.wait_for_selector('#status[data-status="succeeded"]')
    assert page.inner_text("#progress-text") == "40/40"

    # the table refreshes itself until the row reaches succeeded
    page.goto("/")
    row = f'tr.exp-row[data-id="{experiment_id}"]'
    page.wait_for_selector(row)
    page.wait_for_selector(f'{row}[data-status="succeeded"]')
    assert "browser quickstart" in page.inner_text(row)
    assert "%" in page.inner_text(f"{row} td.num")  # key result: test accuracy
    shot(page, "3-table")

    page.click(f"{row} a.exp-link")
    page.wait_for_url(f"**/experiments/{experiment_id}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#plots img')].every(i => i.complete)")
    widths = loaded_plots(page)
    assert widths["learning_curves"] > 0 and widths["robust_vs_radius"] > 0, widths
    assert widths["correlations"] > 0 and widths["cosine"] > 0, widths
    assert "Clean accuracy (test)" in page.inner_text("#summary")
    assert '"multi_cluster"' in page.inner_text("#spec")
    shot(page, "4-detail")
    assert page.problems == []


def test_submit_a_sweep_and_see_its_aggregate_and_band_plot(page, stack):
    page.goto("/submit?template=quickstart")
    page.fill("#spec", json.dumps(small_template_spec(page) | {"name": "browser sweep"}))
    page.fill("#grid", json.dumps({"learner.width": [4, 16]}))
    page.fill("#seeds", "0, 1")
    page.click("#submit-sweep")
    page.wait_for_url("**/sweeps/*")
    # the sweep page reloads itself until every member is done
    page.wait_for_selector('#status[data-status="succeeded"]')
    rows = page.inner_text("#aggregate")
    assert "learner.width=4" in rows and "learner.width=16" in rows and "±" in rows
    page.wait_for_function("() => document.querySelector('#band').complete")
    assert page.eval_on_selector("#band", "i => i.naturalWidth") > 0
    shot(page, "5-sweep")
    assert page.problems == []


def test_cancel_button_stops_a_running_experiment(page, stack):
    spec = {"name": "browser cancel", "device": "cpu",
            "data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 100, "n_test": 50},
            "learner": {"kind": "two_layer_relu", "width": 8},
            "training": {"epochs": 100_000}, "evaluation": {"every": 50, "attacks": []}}
    experiment_id = stack.submit(spec)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.goto(f"/experiments/{experiment_id}")
    loaded = len(navigations)
    rendered = int(page.eval_on_selector("#progress", "p => p.value"))
    # live progress without a reload: the step grows on the page while nothing navigates
    page.wait_for_function("n => document.querySelector('#progress').value > n + 100",
                           arg=rendered)
    assert page.get_attribute("#status", "data-status") == "running"
    # ...and the plots appear as the first evaluations arrive (metrics events)
    page.wait_for_function(
        "() => document.querySelector('#plots img[alt=learning_curves]').naturalWidth > 0")
    assert len(navigations) == loaded, navigations
    shot(page, "6-running")
    page.click("#cancel")
    page.wait_for_selector('#status[data-status="canceled"]')
    assert stack.get(experiment_id)["status"] == "canceled"
    assert page.query_selector("#cancel") is None  # a finished job offers no cancel
    assert page.problems == []


# --------------------------------------------------------------------------- ADVLAB_AUTH=tokens


def test_login_then_cancel_from_the_page_then_logout(browser, tokens_stack):
    import httpx

    stack = tokens_stack
    with stack.client() as client:
        def submit(user: str) -> str:
            response = client.post("/v1/experiments", headers=stack.users[user], json={
                "name": f"{user}'s job", "data": {"kind": "multi_cluster", "d": 20, "k": 4,
                                                  "n_train": 64, "n_test": 32}})
            assert response.status_code == 202, response.text
            return response.json()["id"]

        mine, theirs = submit("alice"), submit("bob")
    context = browser.new_context(base_url=stack.base_url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"JS error: {exc}"))
    try:
        page.goto(f"/experiments/{mine}")  # no session: the login page, remembering the target
        assert "/login?next=/experiments/" in page.url
        page.fill("#token", "advlab_not-a-token")
        page.click("#login-submit")
        assert "invalid or revoked token" in page.inner_text("#login-error")
        page.fill("#token", stack.users["alice"]["Authorization"].split(" ", 1)[1])
        page.click("#login-submit")
        page.wait_for_url(f"**/experiments/{mine}")
        cookie = next(c for c in context.cookies() if c["name"] == "advlab_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
        assert page.inner_text("#user") == "alice"
        shot(page, "7-logged-in")

        page.goto(f"/experiments/{theirs}")  # bob's job: visible, but no cancel button
        assert page.query_selector("#cancel") is None
        page.goto(f"/experiments/{mine}")
        page.click("#cancel")  # the in-page fetch: session cookie + the page's CSRF token
        page.wait_for_selector('#status[data-status="canceled"]')
        status = httpx.get(f"{stack.base_url}/v1/experiments/{mine}",
                           headers=stack.users["bob"], timeout=30).json()["status"]
        assert status == "canceled"
        page.goto("/")
        assert page.query_selector(f'tr.exp-row[data-id="{theirs}"]') is not None
        shot(page, "8-table-logged-in")

        page.click("#logout")
        page.wait_for_url("**/login")
        assert not [c for c in context.cookies() if c["name"] == "advlab_session"]
        page.goto("/sweeps")
        assert "/login?next=/sweeps" in page.url
        assert problems == []
    finally:
        context.close()
