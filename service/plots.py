"""Drawing: matplotlib figures from plain series, rendered to PNG or SVG bytes.

Pure functions of data (no store, no HTTP), so the experiment plot endpoints, the sweep plot
endpoint (service.sweeps) and a notebook all draw the same pictures. Figures are built with the
object-oriented `matplotlib.figure.Figure` (never pyplot's global state, which is not safe
across the server's threads) and rendered by the Agg / SVG backends.

Series shape used throughout: `SeriesMap = {name: {seed: [(step, value), ...]}}`. Several
seeds are drawn as their mean with a ± one (sample) standard deviation band.
"""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from advcore.stats import mean, sample_std

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Points = Sequence[tuple[float, float]]
SeriesMap = Mapping[str, Mapping[int, Points]]

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
SEQUENTIAL = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")  # one family per attack
ROBUST = re.compile(r"^(?P<prefix>(?:fine/)?)(?P<split>train|test)/robust_accuracy/"
                    r"(?P<attack>.+)@(?P<radius>[^@]+)$")


# --------------------------------------------------------------------------- helpers


def new_figure(ncols: int = 1, *, width: float = 6.4, height: float = 4.2) -> "Figure":
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    fig.subplots(1, ncols, squeeze=False)
    return fig


def render(fig: "Figure", fmt: str = "png", dpi: int = 100) -> bytes:
    """PNG or SVG bytes of a figure (ValueError for another format)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {sorted(FORMATS)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    return buf.getvalue()


def mean_std(runs: Iterable[Points]) -> tuple[list[float], list[float], list[float]]:
    """Align runs on their x values (union); mean and sample std (n - 1, as in the sweep
    aggregate table; 0 for a single run) of the runs present at each x. Returns
    (xs, means, stds)."""
    at: dict[float, list[float]] = {}
    for run in runs:
        for x, y in run:
            if y is not None and not math.isnan(y):
                at.setdefault(float(x), []).append(float(y))
    xs = sorted(at)
    means = [mean(at[x]) for x in xs]
    stds = [sample_std(at[x]) or 0.0 for x in xs]  # one run at x: a band of zero width
    return xs, means, stds


def draw_band(ax: "Axes", runs: Iterable[Points], *, label: str, color=None, style: str = "-",
              marker: str | None = None) -> None:
    """Mean line of the runs, with a ± std band when there is more than one run."""
    runs = [list(r) for r in runs]
    xs, means, stds = mean_std(runs)
    if not xs:
        return
    (line,) = ax.plot(xs, means, style, color=color, marker=marker, label=label, lw=1.6, ms=4)
    if len(runs) > 1:
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)],
                        [m + s for m, s in zip(means, stds)], color=line.get_color(), alpha=0.2,
                        lw=0)


def _legend(ax: "Axes", **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", **kwargs)


def _seeds_note(series: SeriesMap) -> str:
    seeds = {seed for per_seed in series.values() for seed in per_seed}
    return f" (mean ± std over {len(seeds)} seeds)" if len(seeds) > 1 else ""


# --------------------------------------------------------------------------- experiment plots


ATTACK_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))  # single attacks; all attacks: solid


def learning_curves(series: SeriesMap, *, title: str) -> "Figure":
    """One panel per quantity, stacked: loss; clean accuracy; robust accuracy (test) — one
    colour per radius (distinct hues), one line style per attack (solid: all attacks
    together, min_*). Legends sit outside the axes, on the right; the robust panel's legend
    lists radii and attacks once each instead of every combination."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    robust: dict[str, list[tuple[float, str]]] = {}  # attack -> [(radius, name)]
    for name in series:
        m = ROBUST.match(name)
        if m and m["split"] == "test" and not m["prefix"]:
            robust.setdefault(m["attack"], []).append((float(m["radius"]), name))
    rows = 3 if robust else 2
    fig = Figure(figsize=(8.4, 2.6 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False, sharex=True)[:, 0]
    ax_loss, ax_acc = axes[0], axes[1]
    tab10 = _colormap("tab10")
    for i, split in enumerate(("train", "test")):
        style = "-" if split == "train" else "--"
        if f"{split}/loss" in series:
            draw_band(ax_loss, series[f"{split}/loss"].values(), label=f"{split} loss",
                      style=style, color=tab10(i))
        if f"{split}/clean_accuracy" in series:
            draw_band(ax_acc, series[f"{split}/clean_accuracy"].values(),
                      label=f"{split} clean", style=style, color=tab10(i))
        if f"fine/{split}/clean_accuracy" in series:  # the k-class task of a fine-label run
            draw_band(ax_acc, series[f"fine/{split}/clean_accuracy"].values(),
                      label=f"{split} clean, k-class", style=style, color=tab10(2))
    ax_loss.set(ylabel="loss", title="loss")
    if any(v > 0 for per_seed in (series.get("train/loss") or {}).values() for _, v in per_seed):
        ax_loss.set_yscale("log")
    ax_acc.set(ylabel="accuracy", title="clean accuracy", ylim=(-0.02, 1.02))
    _legend(ax_loss, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _legend(ax_acc, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if robust:
        ax_rob = axes[2]
        radii = sorted({r for items in robust.values() for r, _ in items})
        palette = _colormap("tab10" if len(radii) <= 10 else "tab20")
        colour = {r: palette(i % palette.N) for i, r in enumerate(radii)}
        attacks = sorted(robust, key=lambda a: (not a.startswith("min_"), a))
        singles = [a for a in attacks if not a.startswith("min_")]
        dash = {a: "-" if a.startswith("min_") else ATTACK_STYLES[singles.index(a) %
                                                                   len(ATTACK_STYLES)]
                for a in attacks}
        for attack in attacks:
            for radius, name in sorted(robust[attack]):
                draw_band(ax_rob, series[name].values(), label=f"{attack}@{radius:g}",
                          color=colour[radius], style=dash[attack])
        handles = [Line2D([], [], color=colour[r], lw=2) for r in radii]
        labels = [f"radius {r:g}" for r in radii]
        handles += [Line2D([], [], color="black", ls=dash[a], lw=1.4) for a in attacks]
        labels += [a + (" (all attacks)" if a.startswith("min_") else "") for a in attacks]
        ax_rob.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      fontsize="small", ncols=2 if len(labels) > 14 else 1)
        ax_rob.set(ylabel="accuracy", title="robust accuracy (test)", ylim=(-0.02, 1.02))
    axes[-1].set_xlabel("epoch")
    _suptitle(fig, title + _seeds_note(series))
    return fig


def robust_vs_radius(series: SeriesMap, *, title: str) -> "Figure":
    """Final robust accuracy against radius, one line per attack (dashed: training set),
    clean test accuracy as a horizontal reference."""
    fig = new_figure(1, width=7.0)
    ax = fig.axes[0]
    curves: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = {}
    for name, per_seed in series.items():
        m = ROBUST.match(name)
        if not m:
            continue
        key = (f"{m['prefix']}{m['attack']}", m["split"])
        for seed, points in per_seed.items():
            if points:
                curves.setdefault(key, {}).setdefault(seed, []).append(
                    (float(m["radius"]), points[-1][1]))
    colors: dict[str, object] = {}
    cycle = _colormap("tab10")
    for (attack, split), per_seed in sorted(curves.items(), key=lambda kv: (kv[0][1] != "test",
                                                                            kv[0][0])):
        color = colors.setdefault(attack, cycle(len(colors) % 10))
        runs = [sorted(points) for points in per_seed.values()]
        label = attack if split == "test" else f"{attack} (train)"
        draw_band(ax, runs, label=label, color=color, style="-" if split == "test" else "--",
                  marker="o")
    clean = series.get("test/clean_accuracy")
    if clean:
        finals = [pts[-1][1] for pts in clean.values() if pts]
        ax.axhline(sum(finals) / len(finals), color="black", ls=":", lw=1, label="clean test")
    ax.set(xlabel="attack radius", ylabel="robust accuracy (last evaluation)",
           title="robust accuracy vs radius" + _seeds_note(series), ylim=(-0.02, 1.02))
    _legend(ax)
    _suptitle(fig, title)
    return fig


def correlation_trajectories(series: SeriesMap, *, title: str,
                             positive: Iterable[int] | None = None) -> "Figure":
    """Per-feature correlation over training. Patch data: robust (solid) vs non-robust (dashed)
    per class, one colour per class. Clusters: one line per cluster, J+ blue-ish, J- red-ish."""
    fig = new_figure(1, width=7.0)
    ax = fig.axes[0]
    names = sorted(n for n in series if n.startswith("corr/"))
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) == 3 and parts[2].isdigit():
            by_kind.setdefault(parts[1], []).append((int(parts[2]), name))
    tab10 = _colormap("tab10")
    if "robust" in by_kind or "non_robust" in by_kind:
        for kind, style in (("robust", "-"), ("non_robust", "--")):
            for i, name in sorted(by_kind.get(kind, [])):
                draw_band(ax, series[name].values(), label=f"{kind.replace('_', '-')} class {i}",
                          color=tab10(i % 10), style=style)
        ylabel = "max_r <w_{i,r}, feature> / ||feature||"
    else:
        positive = set(positive or [])
        blues, reds = _colormap("Blues"), _colormap("Reds")
        clusters = sorted(by_kind.get("cluster", []))
        for idx, (j, name) in enumerate(clusters):
            shade = 0.45 + 0.5 * idx / max(len(clusters) - 1, 1)
            color = blues(shade) if j in positive else reds(shade) if positive else tab10(j % 10)
            sign = "J+" if j in positive else "J-" if positive else ""
            draw_band(ax, series[name].values(), label=f"cluster {j} {sign}".strip(), color=color)
        for kind, items in by_kind.items():  # any other feature family
            if kind != "cluster":
                for i, name in sorted(items):
                    draw_band(ax, series[name].values(), label=f"{kind} {i}")
        ylabel = "max_r cos(w_r, feature)"
    ax.set(xlabel="epoch", ylabel=ylabel, title="correlation trajectories" + _seeds_note(series))
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=2 if len(names) > 16 else 1)
    _suptitle(fig, title)
    return fig


def cosine_heatmaps(matrices: Sequence[Mapping], *, title: str) -> "Figure":
    """Neuron × feature cosine matrices side by side (each: name, step, seed, values,
    row_labels, col_labels), diverging colours on [-1, 1], values written in small matrices."""
    height = min(MAX_HEATMAP_HEIGHT, max(3.5, 0.28 * _rows(matrices) + 1.6))
    fig = new_figure(len(matrices), width=5.2, height=height)
    image = None
    for ax, m in zip(fig.axes, matrices):
        values = m["values"]
        image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto",
                          interpolation="nearest")
        rows, cols = len(values), len(values[0]) if values else 0
        if m.get("col_labels"):
            ticks = _thinned(cols, MAX_COL_LABELS)
            ax.set_xticks(ticks, [m["col_labels"][i] for i in ticks],
                          rotation=90 if len(ticks) > 12 else 0, fontsize="small")
        if m.get("row_labels"):
            # as many labels as fit the bounded height (about 0.17 in a label)
            ticks = _thinned(rows, max(4, int((height - 1.6) / 0.17)))
            ax.set_yticks(ticks, [m["row_labels"][i] for i in ticks],
                          fontsize="x-small" if len(ticks) > 24 else "small")
        if rows * cols <= 200:
            for r, row in enumerate(values):
                for c, v in enumerate(row):
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(v) > 0.6 else "black")
        ax.set(xlabel="feature", ylabel="neuron",
               title=f"{m['name']} (epoch {m['step']}, seed {m['seed']})")
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="cosine")
    _suptitle(fig, title)
    return fig


MAX_HEATMAP_HEIGHT = 7.0  # inches: a 50-row matrix stays one screen tall
MAX_COL_LABELS = 24


def _thinned(n: int, most: int) -> list[int]:
    """Tick positions: all of 0..n-1 when they fit, else every k-th (k the smallest step that
    keeps at most `most`), so labels never overlap."""
    step = max(1, -(-n // max(most, 1)))
    return list(range(0, n, step))


def _suptitle(fig: "Figure", title: str) -> None:
    fig.suptitle(title if len(title) <= 90 else title[:87] + "...", fontsize="medium")


def _rows(matrices: Sequence[Mapping]) -> int:
    return max((len(m["values"]) for m in matrices), default=1)


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


# --------------------------------------------------------------------------- sweeps


def band_plot(groups: Mapping[str, Sequence[Points]], *, title: str, xlabel: str = "epoch",
              ylabel: str = "value", marker: str | None = None) -> "Figure":
    """One mean ± std band per group (e.g. per grid value of a sweep), over its runs (seeds).
    `groups = {"mode=standard": [[(step, value), ...] per seed], ...}`."""
    fig = new_figure(1, width=7.0, height=4.2 + 0.22 * len(groups))
    ax = fig.axes[0]
    cycle = _colormap("tab10")
    for i, (label, runs) in enumerate(groups.items()):
        n = len(runs)
        draw_band(ax, runs, label=f"{label} (n={n})", color=cycle(i % 10), marker=marker)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below the axes: group labels (grid points, spec differences) run long
        fig.legend(handles, labels, loc="outside lower center", fontsize="small",
                   ncols=2 if len(labels) > 4 and max(map(len, labels)) < 40 else 1)
    _suptitle(fig, title)
    return fig


def sweep_band_plot(groups: Mapping[str, Sequence[Points]], *, title: str, xlabel: str = "epoch",
                    ylabel: str = "value", fmt: str = "png") -> bytes:
    """`band_plot` rendered to bytes: what the sweep plot endpoint returns."""
    return render(band_plot(groups, title=title, xlabel=xlabel, ylabel=ylabel), fmt)
