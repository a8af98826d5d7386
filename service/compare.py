"""Side-by-side comparison of experiments: what differs in their specs, their summaries as rows,
and their metric series aligned on a common step axis (null where one has no point).

Several seeds of one experiment are averaged per step (or one seed is picked with `seed`), so
a 3-seed adversarial run lines up against a 1-seed standard run point for point.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel, Field

from advcore.summary import RunSummary
from service.errors import FieldError
from lab.store.base import Experiment, NotFound, Store

MAX_IDS = 20
HIDDEN_SPEC_KEYS = {"name", "tags", "advlab_version"}


class Compared(BaseModel):
    id: str
    name: str
    status: str
    tags: list[str]
    spec_hash: str
    summary: RunSummary | None


class SpecDifference(BaseModel):
    path: str = Field(description="Dotted spec path, e.g. training.mode.")
    values: dict[str, Any] = Field(description="Experiment id → value (null: absent).")


class SummaryRow(BaseModel):
    key: str = Field(description="Metric-style key, e.g. test/clean_accuracy, "
                                 "test/robust_accuracy/pgd_l2@4, test/robust_accuracy/min_l2@4 "
                                 "(against all attacks), disagreement/min_l2@4, duration_s.")
    values: dict[str, float | str | None] = Field(description="Experiment id → value.")


class AlignedSeries(BaseModel):
    name: str
    steps: list[int]
    values: dict[str, list[float | None]] = Field(
        description="Experiment id → one value per step (mean over seeds; null: no point).")


class Comparison(BaseModel):
    experiments: list[Compared]
    spec_diff: list[SpecDifference]
    summary: list[SummaryRow]
    series: list[AlignedSeries]


def parse_ids(raw: Sequence[str]) -> list[str]:
    """`?ids=a,b&ids=c` → [a, b, c], duplicates dropped (order kept)."""
    ids = list(dict.fromkeys(i.strip() for item in raw for i in item.split(",") if i.strip()))
    if not 1 <= len(ids) <= MAX_IDS:
        raise FieldError(["query", "ids"], f"ids: give 1 to {MAX_IDS} experiment ids "
                                           f"(got {len(ids)})", "value_error")
    return ids


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists of dicts → {dotted path: leaf}; lists of scalars stay leaves."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list) and any(isinstance(v, dict) for v in node):
        out = {}
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: node}


def spec_diff(exps: Sequence[Experiment]) -> list[SpecDifference]:
    flat = {e.id: flatten({k: v for k, v in e.spec.items() if k not in HIDDEN_SPEC_KEYS})
            for e in exps}
    paths = sorted({p for f in flat.values() for p in f})
    return [SpecDifference(path=p, values={i: f.get(p) for i, f in flat.items()})
            for p in paths if len({repr(f.get(p)) for f in flat.values()}) > 1]


def summary_rows(summary: dict[str, Any] | None) -> dict[str, Any]:
    """A stored summary as flat key → value (RunSummary.rows: metric-style keys)."""
    parsed = RunSummary.from_stored(summary)
    return dict(parsed.rows()) if parsed is not None else {}


def _aligned(store: Store, exps: Sequence[Experiment], names: list[str] | None,
             max_points: int | None, seed: int | None) -> list[AlignedSeries]:
    # experiment id → name → step → [values over seeds]
    by_exp: dict[str, dict[str, dict[int, list[float]]]] = {}
    for e in exps:
        points = store.get_metrics(e.id, names=names, max_points=max_points, seed=seed)
        per_name = by_exp.setdefault(e.id, {})
        for name, pts in points.items():
            for p in pts:
                per_name.setdefault(name, {}).setdefault(p.step, []).append(p.value)
    all_names = sorted({n for per_name in by_exp.values() for n in per_name})
    out = []
    for name in all_names:
        steps = sorted({s for per_name in by_exp.values() for s in per_name.get(name, {})})
        values = {}
        for e in exps:
            at = by_exp[e.id].get(name, {})
            values[e.id] = [sum(at[s]) / len(at[s]) if s in at else None for s in steps]
        out.append(AlignedSeries(name=name, steps=steps, values=values))
    return out


def compare(store: Store, ids: list[str], *, names: list[str] | None = None,
            max_points: int | None = None, seed: int | None = None,
            with_series: bool = True) -> Comparison:
    """Raises NotFound (404) naming the first unknown id. `with_series=False` leaves the
    (possibly large) aligned series out."""
    exps = [_get(store, i) for i in ids]
    rows = {e.id: summary_rows(e.summary) for e in exps}
    keys = list(dict.fromkeys(k for r in rows.values() for k in r))
    return Comparison(
        experiments=[Compared(id=e.id, name=e.name, status=e.status, tags=list(e.tags),
                              spec_hash=e.spec_hash, summary=RunSummary.from_stored(e.summary))
                     for e in exps],
        spec_diff=spec_diff(exps),
        summary=[SummaryRow(key=k, values={i: r.get(k) for i, r in rows.items()}) for k in keys],
        series=_aligned(store, exps, names, max_points, seed) if with_series else [])


# --------------------------------------------------------------------------- overlay plots


def labels(exps: Sequence[Experiment]) -> dict[str, str]:
    """A legend label per experiment: short id plus what differs in its spec (else its name)."""
    diffs = spec_diff(exps) if len(exps) > 1 else []
    out = {}
    for e in exps:
        parts = [f"{d.path.rsplit('.', 1)[-1]}={d.values[e.id]}" for d in diffs[:3]]
        out[e.id] = f"{e.id[:6]} " + (", ".join(parts) if parts else e.name)[:48]
    return out


def compare_figure(store: Store, ids: list[str], name: str, *, seed: int | None = None,
                   attack: str | None = None):
    """Overlay of several experiments: `robust_vs_radius` (final robust accuracy per attack,
    one line per experiment × attack) or any metric name (its trajectory, one mean ± std band
    per experiment). NoPlotData (409) when none of them has the data."""
    from service import plots
    from service.experiment_plots import MAX_POINTS, NoPlotData

    exps = [_get(store, i) for i in ids]
    names = labels(exps)
    groups: dict[str, list[list[tuple[float, float]]]] = {}
    if name == "robust_vs_radius":
        for e in exps:
            wanted = [n for n in store.metric_names(e.id) if n.startswith("test/robust_accuracy/")]
            per_attack: dict[str, dict[int, list[tuple[float, float]]]] = {}
            for metric, pts in (store.get_metrics(e.id, names=wanted, seed=seed)
                                if wanted else {}).items():
                m = plots.ROBUST.match(metric)
                if not m or (attack is not None and m["attack"] != attack):
                    continue
                last: dict[int, float] = {}
                for p in pts:  # sorted by (seed, step): the last one per seed wins
                    last[p.seed] = p.value
                for s, value in last.items():
                    per_attack.setdefault(m["attack"], {}).setdefault(s, []).append(
                        (float(m["radius"]), value))
            for label, runs in sorted(per_attack.items()):
                groups[f"{names[e.id]} · {label}"] = [sorted(r) for r in runs.values()]
        xlabel, ylabel = "attack radius", "robust accuracy (last evaluation)"
    else:
        for e in exps:
            pts = store.get_metrics(e.id, names=[name], seed=seed,
                                    max_points=MAX_POINTS).get(name, [])
            runs: dict[int, list[tuple[float, float]]] = {}
            for p in pts:
                runs.setdefault(p.seed, []).append((p.step, p.value))
            if runs:
                groups[names[e.id]] = list(runs.values())
        xlabel, ylabel = "epoch", name
    if not groups:
        raise NoPlotData(f"none of the experiments has {name!r} data"
                         + (f" for attack {attack!r}" if attack else "") + " (yet)")
    return plots.band_plot(groups, title=f"compare: {name}", xlabel=xlabel, ylabel=ylabel,
                           marker="o" if name == "robust_vs_radius" else None)


def _get(store: Store, experiment_id: str) -> Experiment:
    try:
        return store.get_experiment(experiment_id)
    except NotFound:
        raise NotFound(f"experiment {experiment_id!r} not found") from None


# --------------------------------------------------------------------------- dashboard page


class ComparePage(BaseModel):
    """What the dashboard's compare page renders; its chart fetches the series from
    GET /v1/compare (one metric at a time)."""

    comparison: Comparison  # without series
    labels: dict[str, str]
    metric_names: list[str]
    default_metric: str | None
    radius_curves: dict[str, dict[str, list[tuple[float, float | None]]]] = Field(
        default_factory=dict, description="Threat (all attacks, min_*) or attack → experiment "
                                          "id → [(radius, final robust accuracy)] from the "
                                          "summaries.")


def page_view(store: Store, ids: list[str]) -> ComparePage:
    """The compare page: experiments, spec differences, summary rows, the metrics they have
    (those every one of them has first), and a default metric to overlay."""
    exps = [_get(store, i) for i in ids]
    comparison = compare(store, ids, with_series=False)  # the page's chart fetches them
    have = [set(store.metric_names(e.id)) for e in exps]
    common = set.intersection(*have) if have else set()
    everything = sorted(set().union(*have), key=lambda n: (n not in common, n))
    preferred = ("test/clean_accuracy", "train/loss", "test/loss")
    default = next((n for n in preferred if n in common),
                   next(iter(everything), None))
    curves: dict[str, dict[str, list[tuple[float, float | None]]]] = {}
    for e in comparison.experiments:
        if e.summary is None:
            continue
        points = ([(r.threat, r.radius, r.accuracy) for r in e.summary.robust_min]
                  + [(r.attack, r.radius, r.accuracy) for r in e.summary.robust_accuracy])
        for threat, radius, accuracy in points:
            curves.setdefault(threat, {}).setdefault(e.id, []).append((radius, accuracy))
    for per_exp in curves.values():
        for pts in per_exp.values():
            pts.sort()
    ordered = dict(sorted(curves.items(), key=lambda kv: (not kv[0].startswith("min_"), kv[0])))
    return ComparePage(comparison=comparison, labels=labels(exps), metric_names=everything,
                       default_metric=default, radius_curves=ordered)
