"""The dashboard's live plot refresh (service/web/static/app.js) run under Node with a stub DOM,
fast and without a browser.

The experiment page reloads its plot images on `metrics` events (at most every 3 s). A render
can take longer than that on a busy server, and giving an <img> a new src cancels its pending
request: if every event re-asked, a running job's plots would never arrive. So an image is only
asked for again once its previous load has settled. And a plot is only asked for once a metric
name it reads has arrived (its figure's `data-needs` pattern), since before that the server
answers 409. Under CI=true a missing `node` FAILS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from service.experiment_plots import PLOT_NEEDS
from tests.conftest import IN_CI

APP_JS = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "app.js"

# A stub DOM with four plot images; each `src` assignment is a request. The script drives
# refreshPlots the way `metrics` events do and prints what was requested when.
HARNESS = r"""
const vm = require("vm");
const fs = require("fs");
const needs = JSON.parse(process.argv[3]);
function makeImg(name) {
  const figure = {classList: new Set(["pending"]), dataset: {needs: needs[name]}};
  figure.classList.remove = (...c) => c.forEach(x => figure.classList.delete(x));
  const img = {dataset: {src: "/plots/" + name + ".png"}, requests: [], figure,
               closest: () => figure, onload: null, onerror: null};
  Object.defineProperty(img, "src", {set(v) { img.requests.push(v); }, get() { return ""; }});
  return img;
}
const imgs = ["learning_curves", "robust_vs_radius", "correlations", "cosine"].map(makeImg);
const document = {querySelectorAll: () => imgs, querySelector: () => null,
                  addEventListener: () => {}, body: {dataset: {}}};
const context = vm.createContext({document, window: {}, console, Date, Set, JSON, RegExp});
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const counts = () => imgs.map(i => i.requests.length);
const out = {};
const names = ["train/loss", "test/clean_accuracy", "corr/cluster/0"];
context.refreshPlots(names);            // first metrics event: no robust series yet
out.first = counts();
context.refreshPlots(names);            // more events while the renders are still running
context.refreshPlots(names);
out.while_loading = counts();
imgs[0].onload();                       // learning_curves arrives, correlations fails
imgs[2].onerror();
out.pending_after = imgs.map(i => i.figure.classList.has("pending"));
out.failed_after = imgs.map(i => i.figure.classList.has("failed"));
names.push("test/robust_accuracy/pgd_l2@1");
context.refreshPlots(names);            // the first attack's numbers arrive
out.after_settle = counts();
console.log(JSON.stringify(out));
"""


def _node() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        if IN_CI:
            pytest.fail("node is needed for the dashboard script test (CI=true: missing fails)")
        pytest.skip("node not installed")
    return node


def test_a_plot_is_asked_for_once_it_has_data_and_not_again_while_loading(tmp_path):
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    done = subprocess.run([_node(), str(harness), str(APP_JS), json.dumps(PLOT_NEEDS)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["first"] == [1, 0, 1, 1]  # robust_vs_radius has no data: not asked (a 409)
    # the loads in flight are left alone: a new src would cancel them
    assert out["while_loading"] == [1, 0, 1, 1]
    assert out["pending_after"] == [False, True, True, True]
    assert out["failed_after"] == [False, False, True, False]
    # the settled ones (loaded, or failed) are refreshed, robust_vs_radius is asked for the
    # first time, and cosine, still in flight, is not
    assert out["after_settle"] == [2, 1, 2, 1]
