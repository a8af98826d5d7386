"""The plots of one experiment: load its series from the store, draw with service.plots.

`PLOTS` names every plot the API serves. An unknown name is a 404 (`UnknownPlot`); a known plot
whose data does not exist (yet) is a 409 (`NoPlotData`): a queued job, a running job before its
first evaluation, or e.g. `robust_vs_radius` for a spec without attacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from service import plots
from service.errors import Conflict
from lab.status import ACTIVE
from lab.store.base import Experiment, MetricPoint, NotFound, Store

PLOTS: dict[str, str] = {
    "learning_curves": "Over epochs, one panel per quantity: train/test loss; clean accuracy; "
                       "robust accuracy (one colour per radius, one line style per attack).",
    "robust_vs_radius": "Robust accuracy at the last evaluation against the attack radius, one "
                        "line per attack (dashed: training set), clean accuracy for reference.",
    "correlations": "Per-feature correlation trajectories: robust vs non-robust per class "
                    "(patch data), max cosine per cluster (multi_cluster, images).",
    "cosine": "Neuron × feature cosine heat-map at the latest (or ?step=) evaluation; "
              "?matrix= picks one of cosine/cluster, cosine/robust, cosine/non_robust.",
}
# Per plot, a pattern (Python and JavaScript alike) over metric names: the plot has data once
# one stored name matches (the dashboard asks for a figure only then, and `figure` answers 409
# until then). robust_vs_radius reads names shaped like plots.ROBUST; the cosine heat-map's
# matrices are written with the corr/ series.
PLOT_NEEDS: dict[str, str] = {
    "learning_curves": r"(/loss|/clean_accuracy)$|^test/robust_accuracy/",
    "robust_vs_radius": r"^(fine/)?(train|test)/robust_accuracy/.+@[^@]+$",
    "correlations": r"^corr/",
    "cosine": r"^corr/",
}
MAX_POINTS = 400  # per (name, seed) series: a plot is ~600 px wide


def _reads(plot: str, name: str) -> bool:
    """Whether metric `name` is one that `plot` has data from."""
    return re.search(PLOT_NEEDS[plot], name) is not None


def plots_with_data(names: Iterable[str]) -> set[str]:
    """The plots whose series exist among the metric `names` (what a page may ask for without
    a 409)."""
    names = list(names)
    return {plot for plot in PLOT_NEEDS if any(_reads(plot, n) for n in names)}


class UnknownPlot(NotFound):
    """No plot with that name (404)."""


class NoPlotData(Conflict):
    """The plot exists but its data does not (yet) (409)."""


def _series(points: dict[str, list[MetricPoint]]) -> plots.SeriesMap:
    out: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for name, pts in points.items():
        for p in pts:
            out.setdefault(name, {}).setdefault(p.seed, []).append((p.step, p.value))
    return out


def _load(store: Store, exp: Experiment, wanted, seed: int | None) -> plots.SeriesMap:
    names = [n for n in store.metric_names(exp.id) if wanted(n)]
    if not names:
        return {}
    return _series(store.get_metrics(exp.id, names=names, max_points=MAX_POINTS, seed=seed))


def _no_data(exp: Experiment, what: str) -> NoPlotData:
    when = "yet" if exp.status in ACTIVE else f"(experiment {exp.status})"
    return NoPlotData(f"experiment {exp.id} has no {what} {when}")


def figure(store: Store, exp: Experiment, name: str, *, seed: int | None = None,
           step: int | None = None, matrix: str | None = None):
    """The matplotlib Figure of plot `name` for this experiment."""
    if name not in PLOTS:
        raise UnknownPlot(f"no plot named {name!r}; one of {sorted(PLOTS)}")
    title = f"{exp.name} [{exp.id[:8]}]"
    if name == "learning_curves":
        series = _load(store, exp, lambda n: _reads(name, n), seed)
        if not series:
            raise _no_data(exp, "loss or accuracy series")
        return plots.learning_curves(series, title=title)
    if name == "robust_vs_radius":
        series = _load(store, exp, lambda n: "/robust_accuracy/" in n or n == "test/clean_accuracy",
                       seed)
        if not any(_reads(name, n) for n in series):
            raise _no_data(exp, "robust-accuracy series")
        return plots.robust_vs_radius(series, title=title)
    if name == "correlations":
        series = _load(store, exp, lambda n: _reads(name, n), seed)
        if not series:
            raise _no_data(exp, "correlation series (evaluation.record needs 'correlations')")
        positive = (exp.spec.get("data") or {}).get("positive_clusters")
        return plots.correlation_trajectories(series, title=title, positive=positive)
    return _cosine(store, exp, title, seed=seed, step=step, matrix=matrix)


def _cosine(store: Store, exp: Experiment, title: str, *, seed: int | None, step: int | None,
            matrix: str | None):
    available = sorted(n for n in store.matrix_steps(exp.id) if n.startswith("cosine/"))
    if matrix is not None:
        if not available:
            raise _no_data(exp, f"matrix {matrix!r}")
        if matrix not in available:
            raise NotFound(f"experiment {exp.id} has no matrix {matrix!r}; one of {available}")
        available = [matrix]
    if not available:
        raise _no_data(exp, "neuron × feature matrices")
    found = []
    for kind in available:
        m = store.get_matrix(exp.id, kind, step=step, seed=seed)
        if m is not None:
            found.append({"name": m.name, "step": m.step, "seed": m.seed, "values": m.values,
                          "row_labels": m.row_labels, "col_labels": m.col_labels})
    if not found:
        raise NotFound(f"experiment {exp.id} has no cosine matrix at step {step}"
                       + (f" for seed {seed}" if seed is not None else ""))
    return plots.cosine_heatmaps(found, title=title)


def render_plot(store: Store, exp: Experiment, name: str, fmt: str, **options) -> bytes:
    """PNG / SVG bytes of plot `name` (UnknownPlot 404, NoPlotData 409, NotFound 404)."""
    return plots.render(figure(store, exp, name, **options), fmt)
