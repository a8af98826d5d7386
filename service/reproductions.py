"""Reproductions on the server: a catalogue entry (advcore.reproductions) at a size becomes ONE
sweep (service.sweeps: admitted whole, owner-scoped, its seeds batched per grid point); its id
is the reproduction's id. The sweep's tags say which entry and size it runs, so nothing new is
stored: the verdict and figure are computed from the members' summaries and series on read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from advcore import reproductions as catalogue
from advcore.reproductions import PointResult, Reproduction
from lab.status import STATUSES
from lab.store.base import Experiment, NotFound, Store, Sweep
from service import sweeps as sweeps_svc

TAG = "reproduction"
NAME_TAG, SIZE_TAG = "reproduction:", "reproduction-size:"
MAX_SERIES_POINTS = 400  # per (name, seed) trajectory in the figure


class ReproductionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Catalogue entry (GET /v1/reproductions).",
                      max_length=100)
    size: Literal["quick", "full"] = Field(
        "quick", description="quick: minutes on a laptop CPU; full: the paper's size.")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in catalogue.CATALOGUE:
            raise ValueError(f"unknown reproduction {name!r}; one of "
                             f"{sorted(catalogue.CATALOGUE)}")
        return name


class ReproductionCreated(BaseModel):
    id: str
    name: str
    size: str
    status: str
    experiment_ids: list[str]


class ReproductionRead(BaseModel):
    id: str
    name: str
    size: str
    title: str
    figure: str
    status: str = Field(description="The sweep's: queued | running | succeeded | failed | "
                                    "canceled.")
    counts: dict[str, int]
    owner: str | None
    created_at: datetime
    experiment_ids: list[str]
    verdict: dict[str, Any] | None = Field(
        None, description="Once every member succeeded: per claim our effect size (mean, "
                          "std, per_seed, n), the paper's number, the criterion and holds.")
    links: dict[str, str]


def sweep_request(name: str, size: str) -> sweeps_svc.SweepCreate:
    entry = catalogue.get(name)
    spec = entry.sizes[size]
    return sweeps_svc.SweepCreate(
        name=f"reproduction {name} ({size})", tags=[TAG, NAME_TAG + name, SIZE_TAG + size],
        base=spec.base, grid=spec.grid, seeds=list(spec.seeds))


def create(store, settings, enqueue, req: ReproductionCreate, idempotency_key, *, user,
           priority: int = 0) -> tuple[Sweep, bool]:
    return sweeps_svc.create(store, settings, enqueue, sweep_request(req.name, req.size),
                             idempotency_key, user=user, priority=priority)


def identify(sweep: Sweep) -> tuple[Reproduction, str] | None:
    """(entry, size) of a reproduction's sweep; None for any other sweep."""
    name = next((t[len(NAME_TAG):] for t in sweep.tags if t.startswith(NAME_TAG)), None)
    size = next((t[len(SIZE_TAG):] for t in sweep.tags if t.startswith(SIZE_TAG)), None)
    if TAG not in sweep.tags or name not in catalogue.CATALOGUE or size not in catalogue.SIZES:
        return None
    return catalogue.CATALOGUE[name], size


def load(store: Store, reproduction_id: str) -> tuple[Sweep, Reproduction, str]:
    """The sweep behind a reproduction id; NotFound (404) for an unknown id or a sweep that is
    no reproduction."""
    try:
        sweep = store.get_sweep(reproduction_id)
    except NotFound:
        sweep = None
    found = identify(sweep) if sweep is not None else None
    if found is None:
        raise NotFound(f"reproduction {reproduction_id!r} not found")
    return sweep, *found


def _point_result(store: Store, entry: Reproduction, member, exp: Experiment) -> PointResult:
    finals = [numbers for _, numbers in sweeps_svc.per_seed(exp, member.seeds)]
    seeds = list(member.seeds)
    if entry.series:
        names = [n for n in store.metric_names(exp.id) if n.startswith(entry.series)]
        if names:
            series = store.get_metrics(exp.id, names=names)
            for i, seed in enumerate(seeds[:len(finals)]):
                for name, pts in series.items():
                    mine = [p for p in pts if p.seed == seed]
                    if mine:
                        finals[i][name] = float(max(mine, key=lambda p: p.step).value)
    trajectories: dict[str, dict[int, list[list[float]]]] = {}
    if entry.trajectories:
        names = [n for n in store.metric_names(exp.id) if n.startswith(entry.trajectories)]
        if names:
            for name, pts in store.get_metrics(exp.id, names=names,
                                               max_points=MAX_SERIES_POINTS).items():
                for p in pts:
                    trajectories.setdefault(name, {}).setdefault(p.seed, []).append(
                        [p.step, p.value])
    return PointResult(point=dict(member.point), seeds=seeds, finals=finals,
                       summaries=[exp.summary] if exp.summary else [], series=trajectories,
                       status=exp.status)


def results(store: Store, sweep: Sweep, entry: Reproduction) -> list[PointResult]:
    by_id = {e.id: e for e in store.sweep_experiments(sweep.id)}
    out = []
    for member in sorted(sweep.members, key=lambda m: m.point_index):
        exp = by_id.get(member.experiment_id)
        if exp is not None:
            out.append(_point_result(store, entry, member, exp))
    return out


def matrices(store: Store, sweep: Sweep) -> list[dict[str, Any]]:
    """The latest cosine/cluster matrix of each member's first seed (the figure's heat-maps)."""
    out = []
    for member in sweep.members:
        m = store.get_matrix(member.experiment_id, "cosine/cluster", seed=member.seeds[0])
        if m is not None:
            out.append({"point": dict(member.point), "name": m.name, "seed": m.seed,
                        "values": m.values, "rows": m.row_labels, "cols": m.col_labels})
    return out


def read(store: Store, sweep: Sweep, entry: Reproduction, size: str) -> ReproductionRead:
    experiments = store.sweep_experiments(sweep.id)
    counts = {s: 0 for s in STATUSES}
    for e in experiments:
        counts[e.status] = counts.get(e.status, 0) + 1
    status = sweeps_svc.sweep_status(counts)
    verdict = (catalogue.verdict(entry, size, results(store, sweep, entry))
               if status == "succeeded" else None)
    base = f"/v1/reproductions/{sweep.id}"
    return ReproductionRead(
        id=sweep.id, name=entry.name, size=size, title=entry.title, figure=entry.figure,
        status=status, counts=counts, owner=sweep.owner, created_at=sweep.created_at,
        experiment_ids=[m.experiment_id for m in sweep.members], verdict=verdict,
        links={"self": base, "figure": f"{base}/figure.png", "sweep": f"/v1/sweeps/{sweep.id}"})


def figure_png(store: Store, sweep: Sweep, entry: Reproduction, size: str) -> bytes | None:
    """The figure once every member succeeded (None before)."""
    from service.reproduction_figures import figure_png as draw

    done = read(store, sweep, entry, size)
    if done.verdict is None:
        return None
    points = results(store, sweep, entry)
    return draw(entry, done.verdict, points, matrices(store, sweep))


def recent(store: Store, limit: int = 50) -> list[ReproductionRead]:
    """The newest reproductions (sweeps tagged as one), newest first."""
    out = []
    for sweep in store.list_sweeps(limit=500):
        found = identify(sweep)
        if found is not None:
            out.append(read(store, sweep, *found))
            if len(out) >= limit:
                break
    return out
