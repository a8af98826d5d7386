"""What a sweep looks like from outside: the read schema, the export table and the band plot.

Built from the store's Sweep + member experiments by the functions in service/sweeps.py; the
export uses H's writer (service.export.write_table) and the plot H's band helper
(service.plots.sweep_band_plot), so a sweep and an experiment export/draw the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from service import sweeps as svc
from service.errors import Conflict
from service.experiments import to_read as experiment_read
from service.schemas import ExperimentRead
from lab.status import STATUSES
from lab.store.base import Experiment, Store, Sweep

if TYPE_CHECKING:
    import pandas as pd

PLOT_MAX_POINTS = 400  # per (member, seed) series: a plot is ~700 px wide


class GridAxis(BaseModel):
    path: str
    values: list[Any]


class MetricStats(BaseModel):
    mean: float | None
    std: float | None = Field(description="Sample standard deviation over seeds (n-1); null "
                                          "for a single seed.")
    n: int = Field(description="Seeds that contributed (succeeded members only).")
    min: float | None
    max: float | None


class AggregateRow(BaseModel):
    point_index: int
    point: dict[str, Any] = Field(description="Grid values of this point, by spec path.")
    label: str
    counts: dict[str, int] = Field(description="Member experiments by status.")
    seeds: list[int] = Field(description="Seeds whose final numbers are aggregated.")
    experiment_ids: list[str]
    metrics: dict[str, MetricStats] = Field(
        description="Final numbers per metric, e.g. `test/clean_accuracy`, "
                    "`test/robust_accuracy/pgd_l2@4`, `corr/cluster/0`.")


class SweepMemberRead(BaseModel):
    point_index: int
    point: dict[str, Any]
    seeds: list[int]
    experiment: ExperimentRead | None = Field(description="null when the member was deleted.")


class SweepLinks(BaseModel):
    self: str
    cancel: str
    export_csv: str
    export_parquet: str
    plot: str = Field(description="Template: replace {metric} by a metric name, e.g. "
                                  "test/clean_accuracy.")


class SweepRead(BaseModel):
    id: str
    name: str
    tags: list[str]
    status: str = Field(description="queued | running | succeeded | failed | canceled "
                                    "(derived from the members).")
    counts: dict[str, int] = Field(description="Member experiments by status.")
    created_at: datetime
    base_spec: dict[str, Any]
    grid: list[GridAxis]
    seeds: list[int]
    seed_mode: str
    members: list[SweepMemberRead]
    owner: str | None = Field(None, description="User who created it.")
    aggregate: list[AggregateRow] = Field(description="One row per grid point: mean ± std "
                                                      "over seeds of each final metric.")
    metric_names: list[str] = Field(description="Keys present in the aggregate table.")
    links: SweepLinks


class SweepCreated(BaseModel):
    id: str
    status: str
    experiment_ids: list[str]
    links: SweepLinks


class MemberEstimate(BaseModel):
    point_index: int
    point: dict[str, Any]
    seeds: list[int]
    queue: str = Field(description="cpu | gpu: whose limits the member was admitted under.")
    flops: float
    peak_bytes: float
    stored_bytes: float
    n_evaluations: int
    dominant: dict[str, str | None] = Field(description="Quantity -> the spec field driving it.")


class SweepEstimateRead(BaseModel):
    """POST /v1/sweeps?dry_run=true: what the sweep would cost, nothing stored."""

    dry_run: bool = True
    n_members: int
    flops: float = Field(description="Summed over members.")
    gflop: float
    peak_bytes: float = Field(description="The largest member's (members run as separate jobs).")
    stored_bytes: float = Field(description="Summed over members.")
    limits: dict[str, float] = Field(description="Sweep limits: flops, stored_bytes "
                                                 "(ADVLAB_MAX_SWEEP_GFLOP, _MAX_SWEEP_STORED_GB).")
    members: list[MemberEstimate]


class SweepSummary(BaseModel):
    """A sweep in a list: no members or aggregate."""

    id: str
    name: str
    tags: list[str]
    status: str
    counts: dict[str, int]
    created_at: datetime
    grid: list[GridAxis]
    seeds: list[int]
    seed_mode: str
    owner: str | None = None


def links(sweep_id: str) -> SweepLinks:
    base = f"/v1/sweeps/{sweep_id}"
    return SweepLinks(self=base, cancel=f"{base}/cancel", export_csv=f"{base}/export.csv",
                      export_parquet=f"{base}/export.parquet", plot=f"{base}/plots/{{metric}}.png")


def counts_of(experiments: list[Experiment]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for exp in experiments:
        counts[exp.status] += 1
    return counts


def to_read(sweep: Sweep, experiments: list[Experiment]) -> SweepRead:
    by_id = {e.id: e for e in experiments}
    counts = counts_of(experiments)
    rows = svc.aggregate(sweep, experiments)
    names = sorted({k for row in rows for k in row["metrics"]})
    members = [SweepMemberRead(point_index=m.point_index, point=m.point, seeds=m.seeds,
                               experiment=experiment_read(by_id[m.experiment_id])
                               if m.experiment_id in by_id else None) for m in sweep.members]
    return SweepRead(
        id=sweep.id, name=sweep.name, tags=sweep.tags, status=svc.sweep_status(counts),
        counts=counts, created_at=sweep.created_at, base_spec=sweep.base_spec,
        grid=[GridAxis(path=p, values=v) for p, v in sweep.grid], seeds=sweep.seeds,
        seed_mode=sweep.seed_mode, members=members, aggregate=[AggregateRow(**r) for r in rows],
        metric_names=names, links=links(sweep.id), owner=sweep.owner)


def to_summary(sweep: Sweep, experiments: list[Experiment]) -> SweepSummary:
    counts = counts_of(experiments)
    return SweepSummary(id=sweep.id, name=sweep.name, tags=sweep.tags,
                        status=svc.sweep_status(counts), counts=counts,
                        created_at=sweep.created_at,
                        grid=[GridAxis(path=p, values=v) for p, v in sweep.grid],
                        seeds=sweep.seeds, seed_mode=sweep.seed_mode, owner=sweep.owner)


def read(store: Store, sweep: Sweep) -> SweepRead:
    return to_read(sweep, store.sweep_experiments(sweep.id))


# --------------------------------------------------------------------------- export


def sweep_frame(store: Store, sweep: Sweep) -> "pd.DataFrame":
    """Every recorded point of every member, long form, with one column per grid path in
    front: `<grid paths...>, experiment_id, name, seed, step, value`."""
    import pandas as pd

    from service.export import COLUMNS, experiment_frame

    frames = []
    for exp, member in _members(store, sweep):
        frame = experiment_frame(store, exp)
        for path, _ in reversed(sweep.grid):
            value = member.point.get(path)
            frame.insert(0, path, str(value) if isinstance(value, (dict, list)) else value)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[p for p, _ in sweep.grid] + COLUMNS)
    return pd.concat(frames, ignore_index=True)


def export(store: Store, sweep: Sweep, fmt: str) -> bytes:
    from service.export import write_table

    read_model = to_read(sweep, store.sweep_experiments(sweep.id))
    metadata = {"advlab.sweep_id": sweep.id, "advlab.name": sweep.name,
                "advlab.grid": [g.model_dump() for g in read_model.grid],
                "advlab.seeds": sweep.seeds, "advlab.base_spec": sweep.base_spec,
                "advlab.aggregate": [r.model_dump() for r in read_model.aggregate]}
    return write_table(sweep_frame(store, sweep), fmt, metadata)


def _members(store: Store, sweep: Sweep):
    by_id = {e.id: e for e in store.sweep_experiments(sweep.id)}
    return [(by_id[m.experiment_id], m) for m in sweep.members if m.experiment_id in by_id]


# --------------------------------------------------------------------------- plot


class NoSweepPlotData(Conflict):
    """No member has recorded that metric (yet) (409)."""


def band_groups(store: Store, sweep: Sweep, metric: str) -> dict[str, list[list[tuple]]]:
    """{grid point label: [one (step, value) series per seed]} for one metric name."""
    groups: dict[int, list[list[tuple]]] = {}
    labels: dict[int, str] = {}
    for exp, member in _members(store, sweep):
        labels[member.point_index] = svc.point_label(member.point)
        points = store.get_metrics(exp.id, names=[metric], max_points=PLOT_MAX_POINTS)
        by_seed: dict[int, list[tuple]] = {}
        for p in points.get(metric, []):
            by_seed.setdefault(p.seed, []).append((p.step, p.value))
        groups.setdefault(member.point_index, []).extend(by_seed[s] for s in sorted(by_seed))
    return {labels[i]: groups[i] for i in sorted(groups) if groups[i]}


def plot(store: Store, sweep: Sweep, metric: str, fmt: str) -> bytes:
    from service.plots import sweep_band_plot

    groups = band_groups(store, sweep, metric)
    if not groups:
        raise NoSweepPlotData(f"no member of sweep {sweep.id} has recorded {metric!r} yet")
    return sweep_band_plot(groups, title=f"{sweep.name}: {metric} (mean ± std over seeds)",
                           ylabel=metric, fmt=fmt)
