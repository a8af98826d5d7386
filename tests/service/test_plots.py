"""GET /v1/experiments/{id}/plots/{name}.{png,svg} on real finished runs, and the drawing
helpers' numbers (what is drawn is what was recorded)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from advcore.summary import RunSummary

from service import plots
from service.experiment_plots import PLOTS, figure
from tests.service.results_support import cluster_spec, open_results, patch_spec


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    for r in open_results(tmp_path_factory.mktemp("plots")):
        r.submit("two_seeds", cluster_spec(seeds=[0, 1]))
        r.submit("patch", patch_spec())
        r.submit("no_attacks", cluster_spec(**{"evaluation.attacks": []}))
        r.submit("queued", cluster_spec(), run=False)
        yield r


def _url(results, label: str, name: str, fmt: str = "png") -> str:
    return f"/v1/experiments/{results.ids[label]}/plots/{name}.{fmt}"


def _labels(fig) -> set[str]:
    return {line.get_label() for ax in fig.axes for line in ax.get_lines()}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_is_a_decodable_png_of_real_size(results, name):
    response = results.client.get(_url(results, "two_seeds", name))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.verify()
    assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_is_a_parseable_svg(results, name):
    response = results.client.get(_url(results, "patch", name, "svg"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    assert root.tag.endswith("svg") and len(response.content) > 5_000


def test_unknown_plot_name_is_404_naming_the_known_plots(results):
    response = results.client.get(_url(results, "two_seeds", "histogram"))
    assert response.status_code == 404
    assert "learning_curves" in response.json()["detail"]


def test_unknown_experiment_and_unknown_format_are_404_and_422(results):
    assert results.client.get("/v1/experiments/nope/plots/cosine.png").status_code == 404
    assert results.client.get(_url(results, "two_seeds", "cosine", "gif")).status_code == 422


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_a_queued_experiment_answers_409_for_every_plot(results, name):
    response = results.client.get(_url(results, "queued", name))
    assert response.status_code == 409
    assert "yet" in response.json()["detail"]


def test_robust_vs_radius_without_attacks_is_409_but_learning_curves_render(results):
    assert results.client.get(_url(results, "no_attacks", "robust_vs_radius")).status_code == 409
    assert results.client.get(_url(results, "no_attacks", "learning_curves")).status_code == 200


def test_robust_vs_radius_draws_one_line_per_attack_at_the_summary_values(results):
    exp = results.store.get_experiment(results.ids["two_seeds"])
    fig = figure(results.store, exp, "robust_vs_radius")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"pgd_l2", "feature_direction", "min_l2", "clean test"}
    summary = RunSummary.from_stored(exp.summary)
    for attack in ("pgd_l2", "feature_direction", "min_l2"):  # min_l2: against all attacks
        want = sorted((r.radius, r.accuracy) for r in summary.robust_accuracy
                      if r.attack == attack)  # the summary's numbers are the seed means
        want += sorted((m.radius, m.accuracy) for m in summary.robust_min if m.threat == attack)
        assert list(lines[attack].get_xdata()) == [r for r, _ in want]
        assert list(lines[attack].get_ydata()) == pytest.approx([a for _, a in want])


def test_learning_curves_show_the_seed_mean_with_a_band(results):
    exp = results.store.get_experiment(results.ids["two_seeds"])
    fig = figure(results.store, exp, "learning_curves")
    ax_loss = fig.axes[0]
    (train,) = [ln for ln in ax_loss.get_lines() if ln.get_label() == "train loss"]
    per_seed = results.store.get_metrics(exp.id, names=["train/loss"])["train/loss"]
    last = [p.value for p in per_seed if p.step == 6]
    assert len(last) == 2 and train.get_ydata()[-1] == pytest.approx(sum(last) / 2)
    assert ax_loss.collections, "two seeds: a ± std band"
    assert {"pgd_l2@4", "feature_direction@1"} <= _labels(fig)


def test_patch_correlations_plot_robust_and_non_robust_per_class(results):
    exp = results.store.get_experiment(results.ids["patch"])
    fig = figure(results.store, exp, "correlations")
    assert _labels(fig) == {"robust class 0", "robust class 1",
                            "non-robust class 0", "non-robust class 1"}


def test_cluster_correlations_mark_positive_and_negative_clusters(results):
    exp = results.store.get_experiment(results.ids["two_seeds"])
    assert _labels(figure(results.store, exp, "correlations")) == {
        "cluster 0 J+", "cluster 1 J+", "cluster 2 J-", "cluster 3 J-"}


def test_cosine_heatmap_shows_the_stored_matrix_and_404s_an_unknown_one(results):
    exp = results.store.get_experiment(results.ids["patch"])
    fig = figure(results.store, exp, "cosine", matrix="cosine/robust", seed=0)
    stored = results.store.get_matrix(exp.id, "cosine/robust", seed=0)
    drawn = fig.axes[0].get_images()[0].get_array()
    assert drawn.shape == (4, 2)  # 2 neurons per class x 2 classes, 2 robust features
    assert drawn.ravel().tolist() == pytest.approx([v for row in stored.values for v in row])
    both = figure(results.store, exp, "cosine")
    assert len(both.axes[0].get_images() + both.axes[1].get_images()) == 2
    missing = results.client.get(_url(results, "patch", "cosine") + "?matrix=cosine/cluster")
    assert missing.status_code == 404 and "cosine/robust" in missing.json()["detail"]


def test_mean_std_aligns_runs_on_their_steps():
    xs, means, stds = plots.mean_std([[(0, 1.0), (1, 3.0)], [(0, 3.0), (1, 5.0), (2, 7.0)]])
    assert xs == [0, 1, 2]
    assert means == [2.0, 4.0, 7.0]
    assert stds == pytest.approx([2 ** 0.5, 2 ** 0.5, 0.0])  # sample std, as the sweep table


def test_sweep_band_plot_draws_one_band_per_group():
    groups = {"mode=standard": [[(0, 0.1), (1, 0.5)], [(0, 0.2), (1, 0.7)]],
              "mode=adversarial": [[(0, 0.3), (1, 0.4)]]}
    fig = plots.band_plot(groups, title="sweep", ylabel="accuracy")
    assert _labels(fig) == {"mode=standard (n=2)", "mode=adversarial (n=1)"}
    assert len(fig.axes[0].collections) == 1  # a band only where there is more than one run
    assert plots.sweep_band_plot(groups, title="sweep").startswith(b"\x89PNG")


def test_learning_curves_give_each_quantity_its_panel_each_radius_its_colour_legends_outside():
    series = {"train/loss": {0: [(0, 1.0), (5, 0.2)]}, "test/loss": {0: [(0, 1.1), (5, 0.3)]},
              "train/clean_accuracy": {0: [(0, 0.5), (5, 1.0)]},
              "test/clean_accuracy": {0: [(0, 0.5), (5, 0.9)]}}
    radii = [0.5, 1, 2, 4, 8]
    for attack in ("pgd_l2", "feature_direction", "min_l2"):
        for r in radii:
            series[f"test/robust_accuracy/{attack}@{r:g}"] = {0: [(0, 0.5), (5, 1 / (1 + r))]}
    fig = plots.learning_curves(series, title="t")
    ax_loss, ax_clean, ax_robust = fig.axes[:3]
    assert {ln.get_label() for ln in ax_loss.get_lines()} == {"train loss", "test loss"}
    assert {ln.get_label() for ln in ax_clean.get_lines()} == {"train clean", "test clean"}
    lines = {ln.get_label(): ln for ln in ax_robust.get_lines()}
    assert len(lines) == 15
    colours = {r: lines[f"pgd_l2@{r:g}"].get_color() for r in radii}
    assert len(set(colours.values())) == len(radii)  # distinct hues, not shades of one
    assert all(lines[f"min_l2@{r:g}"].get_color() == colours[r] for r in radii)
    assert lines["min_l2@1"].get_linestyle() == "-" and lines["pgd_l2@1"].get_linestyle() != "-"
    legend = ax_robust.get_legend()
    assert len(legend.get_texts()) == len(radii) + 3  # radii and attacks once each, not 15
    fig.canvas.draw()  # laid out: every legend starts right of its axes
    for ax in (ax_loss, ax_clean, ax_robust):
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1


def test_a_50_row_heatmap_stays_bounded_with_thinned_labels():
    matrix = {"name": "cosine/cluster", "step": 10, "seed": 0,
              "values": [[((r * c) % 7) / 7 for c in range(30)] for r in range(50)],
              "row_labels": [f"n{r}" for r in range(50)],
              "col_labels": [f"mu_{c}" for c in range(30)]}
    fig = plots.cosine_heatmaps([matrix], title="t")
    assert fig.get_figheight() <= plots.MAX_HEATMAP_HEIGHT
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert 4 <= len(rows) < 50 and rows[0] == "n0" and len(cols) <= plots.MAX_COL_LABELS
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_yticklabels()]
    assert all(a.y0 >= b.y1 or b.y0 >= a.y1 for a, b in zip(boxes, boxes[1:]))  # no overlap


def test_a_plot_has_data_exactly_when_a_name_it_reads_is_stored():
    from service.experiment_plots import PLOTS, plots_with_data

    assert plots_with_data([]) == set()
    assert plots_with_data(["train/loss"]) == {"learning_curves"}
    assert plots_with_data(["test/robust_accuracy/pgd_l2@1"]) == {"learning_curves",
                                                                  "robust_vs_radius"}
    assert plots_with_data(["train/robust_accuracy/pgd_l2@1"]) == {"robust_vs_radius"}
    assert plots_with_data(["corr/cluster", "test/clean_accuracy"]) == set(PLOTS) - {
        "robust_vs_radius"}
