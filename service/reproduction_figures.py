"""The paper-style figure of a reproduction (advcore.reproductions): mean ± std over seeds,
the theory marks, the paper's reference numbers beside ours, and the verdict table under it.

Pure functions of the verdict, the grid points' results and (optionally) the final cosine
matrices, so the API (GET /v1/reproductions/{id}/figure.png) and `advlab reproduce --local`
draw the same picture."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from advcore.reproductions import (FA_PAPER, SEPARATION_PAPER, TABLE2, PointResult,
                                   Reproduction, _attack_rows, _sep_rows, curve, find,
                                   seed_values)
from advcore.stats import mean, sample_std
from service.plots import draw_band, render

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["figure", "figure_png", "render"]


def _ms(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, 0.0
    return mean(values), sample_std(values) or 0.0


def _fmt(stats: Mapping[str, Any]) -> str:
    m, s = stats.get("mean"), stats.get("std")
    if m is None:
        return "n/a"
    return f"{m:.3g}" + (f" ± {s:.2g}" if s is not None else "")


def verdict_table(ax: "Axes", verdict: Mapping[str, Any]) -> None:
    ax.axis("off")
    rows = [[c["key"], _fmt(c["ours"]), "—" if c["paper"] is None else f"{c['paper']:.3g}",
             c["criterion"], "holds" if c["holds"] else "does NOT hold"]
            for c in verdict["claims"]]
    table = ax.table(cellText=rows, colLabels=["claim", "ours (mean ± std)", "paper",
                                               "criterion", "verdict"],
                     loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    for i, c in enumerate(verdict["claims"], start=1):
        table[i, 4].set_facecolor("#d8f0d8" if c["holds"] else "#f6d5d5")


def _layout(n_panels: int, n_claims: int) -> tuple["Figure", list["Axes"], "Axes"]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0 * n_panels, 11.0), 4.2 + 0.32 * (n_claims + 2)),
                 layout="constrained")
    grid = fig.add_gridspec(2, n_panels, height_ratios=[4.2, 0.32 * (n_claims + 2)])
    panels = [fig.add_subplot(grid[0, i]) for i in range(n_panels)]
    table = fig.add_subplot(grid[1, :])
    return fig, panels, table


# --------------------------------------------------------------------------- per entry


def _feature_averaging(fig_axes, verdict, points, matrices) -> None:
    ax_curve, ax_cos, *ax_mats = fig_axes
    params = verdict["params"]
    d = params["d"]
    scale = math.sqrt(d / FA_PAPER["d"])  # the paper's radii, rescaled to our d
    colors = {"binary": "tab:red", "fine": "tab:blue"}
    names = {"binary": "binary-trained", "fine": "fine-label (argmax)"}
    for labels in ("binary", "fine"):
        p = find(points, **{"training.labels": labels})
        runs = [list(zip(*curve(f, "min_l2"))) for f in p.finals]
        draw_band(ax_curve, runs, label=f"{names[labels]} (ours, {len(runs)} seeds)",
                  color=colors[labels], marker="o")
        xs, ys = zip(*FA_PAPER[labels])
        ax_curve.plot([x * scale for x in xs], ys, "x--", color=colors[labels], alpha=0.6,
                      label=f"{names[labels]} (paper, radii × √({d:g}/{FA_PAPER['d']}))")
    for key, text, style in (("sqrt_d_k", "√(d/k)", ":"), ("sqrt_d_2", "√(d/2)", "-.")):
        ax_curve.axvline(params[key], color="k", ls=style, lw=1)
        ax_curve.text(params[key], 1.02, text, ha="center", va="bottom", fontsize=9,
                      transform=ax_curve.get_xaxis_transform())
    ax_curve.set_xlabel("l2 radius")
    ax_curve.set_ylabel("robust accuracy (min over attacks)")
    ax_curve.set_ylim(-0.03, 1.03)
    ax_curve.legend(fontsize=7, loc="lower left")
    # max_r cos(w_r, mu_j) per cluster, mean ± std over seeds
    k = int(params["k"])
    width = 0.4
    for i, labels in enumerate(("binary", "fine")):
        p = find(points, **{"training.labels": labels})
        ms = [_ms(seed_values(p, lambda f, j=j: f.get(f"corr/cluster/{j}"))) for j in range(k)]
        ax_cos.bar([j + (i - 0.5) * width for j in range(k)], [m for m, _ in ms], width,
                   yerr=[s for _, s in ms], color=colors[labels], alpha=0.8, label=names[labels])
    ax_cos.axhline(params["inv_sqrt_k_2"], color="k", ls=":", lw=1)
    ax_cos.text(k - 0.5, params["inv_sqrt_k_2"], "1/√(k/2)", ha="right", va="bottom", fontsize=9)
    ax_cos.axhline(1.0, color="k", ls="-.", lw=0.8)
    ax_cos.set_ylim(0, 1.1)
    ax_cos.set_xlabel("cluster j")
    ax_cos.set_ylabel("max_r cos(w_r, μ_j)")
    ax_cos.legend(fontsize=7, loc="lower right")
    for ax, labels in zip(ax_mats, ("binary", "fine")):
        mats = [m for m in matrices if m["name"] == "cosine/cluster"
                and m["point"].get("training.labels") == labels]
        if not mats:
            ax.axis("off")
            continue
        m = min(mats, key=lambda m: m["seed"])
        ax.imshow(m["values"], cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto",
                  interpolation="nearest")
        ax.set_title(f"cos(w_r, μ_j), {names[labels]}, seed {m['seed']}", fontsize=9)
        ax.set_xlabel("cluster j")
        ax.set_ylabel("neuron r")


def _patch(fig_axes, verdict, points, matrices) -> None:
    for ax, mode in zip(fig_axes, ("standard", "adversarial")):
        p = find(points, **{"training.mode": mode})
        for kind, color, label in (("robust", "tab:green", "u (robust)"),
                                   ("non_robust", "tab:orange", "v (non-robust)")):
            names = [n for n in p.series if n.startswith(f"corr/{kind}/")]
            runs = []
            for seed in p.seeds:
                per_step: dict[float, list[float]] = {}
                for n in names:
                    for step, value in p.series[n].get(seed, []):
                        per_step.setdefault(step, []).append(value)
                runs.append(sorted((s, sum(v) / len(v)) for s, v in per_step.items()))
            draw_band(ax, runs, label=label, color=color)
        ax.set_title(f"{mode} training", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("max_r ⟨w_{i,r}, f_i⟩/‖f_i‖ (mean over classes)")
        ax.legend(fontsize=8)


def _feature_attacks(fig_axes, verdict, points, matrices) -> None:
    (ax,) = fig_axes
    radius = verdict["params"]["radius"]
    bars, labels = [], []
    for model in ("standard", "adversarial"):
        for subspace, short in (("non_robust", "NRF"), ("robust", "RF")):
            ours = _ms(_attack_rows(points[0], model, subspace, radius))
            paper = sum(TABLE2[model][subspace]) / 4 / 100
            bars.append((ours, paper))
            labels.append(f"{model[:3]}. {short}")
    xs = range(len(bars))
    ax.bar([x - 0.2 for x in xs], [b[0][0] for b in bars], 0.4, yerr=[b[0][1] for b in bars],
           label=f"ours (digits, l2 r={radius:g}, mean ± std over seeds)", color="tab:blue")
    ax.bar([x + 0.2 for x in xs], [b[1] for b in bars], 0.4, label="paper (CIFAR-10 Table 2)",
           color="tab:gray")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("targeted success (mean over pairs)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)


def _separation(fig_axes, verdict, points, matrices) -> None:
    (ax,) = fig_axes
    eps = verdict["params"]["eps"]
    rows = _sep_rows(points[0], "linf")
    names = ["digits (ours)"] + list(SEPARATION_PAPER)
    tt = [_ms([r["train_train_min"] / (2 * eps) for r in rows])[0]] + [
        v[1] / (2 * v[0]) for v in SEPARATION_PAPER.values()]
    te = [_ms([r["test_train_min"] / (2 * eps) for r in rows])[0]] + [
        v[2] / (2 * v[0]) for v in SEPARATION_PAPER.values()]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], tt, 0.4, label="min train-train / 2ε")
    ax.bar([x + 0.2 for x in xs], te, 0.4, label="min test-train / 2ε")
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("l_inf distance / 2ε (> 1: a robust classifier exists)")
    ax.legend(fontsize=8)


def _width(fig_axes, verdict, points, matrices) -> None:
    (ax,) = fig_axes
    radius = verdict["params"]["radius"]
    for split, color in (("train", "tab:red"), ("test", "tab:blue")):
        key = f"{split}/robust_accuracy/min_linf@{radius:g}"
        runs: dict[int, list[tuple[float, float]]] = {}
        for p in points:
            width = p.point["learner.widths"][0]
            for seed, f in zip(p.seeds, p.finals):
                if key in f:
                    runs.setdefault(seed, []).append((width, f[key]))
        draw_band(ax, list(runs.values()), label=f"robust {split} accuracy (ours)", color=color,
                  marker="o")
    clean = [(p.point["learner.widths"][0], _ms(seed_values(p, lambda f: f.get(
        "test/clean_accuracy")))[0]) for p in points]
    ax.plot(*zip(*clean), "s:", color="tab:gray", label="clean test accuracy (ours)")
    ax.axhline(0.458, color="tab:blue", ls="--", lw=0.8, label="paper: CIFAR-10 robust test 45.8%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden width m")
    ax.set_ylabel(f"accuracy (l_inf r={radius:g}, min over attacks)")
    ax.set_ylim(-0.03, 1.05)
    ax.legend(fontsize=8)


DRAW = {"feature_averaging": (_feature_averaging, 4), "patch_trajectories": (_patch, 2),
        "feature_attacks": (_feature_attacks, 1), "separation": (_separation, 1),
        "width_sweep": (_width, 1)}


def figure(entry: Reproduction, verdict: Mapping[str, Any], points: Sequence[PointResult],
           matrices: Sequence[Mapping[str, Any]] = ()) -> "Figure":
    draw, n = DRAW[entry.name]
    fig, panels, table = _layout(n, len(verdict["claims"]))
    draw(panels, verdict, list(points), list(matrices))
    verdict_table(table, verdict)
    status = "all claims hold" if verdict["holds"] else "some claims do NOT hold"
    fig.suptitle(f"{entry.figure} — {entry.name} ({verdict['size']}): {status}", fontsize=11)
    return fig


def figure_png(entry: Reproduction, verdict: Mapping[str, Any], points: Sequence[PointResult],
               matrices: Sequence[Mapping[str, Any]] = ()) -> bytes:
    return render(figure(entry, verdict, points, matrices), "png", dpi=90)
