"""Sweeps: a base spec + a grid over dotted spec paths + seeds → member experiments, one sweep id.

Expansion. The grid is a cartesian product, in the order the paths were given. Each grid point
sets its values into a copy of the base spec (`training.mode`, `learner.width`,
`evaluation.attacks.0.radii`: dotted paths, list indices as numbers) and is validated as a full
experiment spec; errors name the grid path (or the base path) that caused them.

Admission. The member count is read off the grid's shape (product of the axis lengths, x seeds
in `separate` mode) before a single point is built, so a 10^8-point grid is a 413 at once. Each
member is then priced by advcore.cost and admitted against its queue's limits (service.admission),
and the members' summed compute and stored bytes against the sweep limits: the sweep is admitted
as a whole or not at all. A 413 names the grid axis (or base field) that drives the estimate.

Seeds. `seed_mode="batched"` (the default) makes ONE member per grid point with `seeds: [...]`:
every advcore learner trains its seeds as one batched computation (contract 2: S batched seeds ==
S separate runs), so the sweep costs one job per point and no per-seed overhead. A batched
member fails or is canceled as a whole. `seed_mode="separate"` makes one member per (point,
seed), which spreads the seeds of a point over several workers. Both give the same aggregate.

Aggregate. For each grid point, the per-seed final numbers are read from the members' summaries
(advcore.summary.RunSummary; a batched one carries one entry per seed under "seeds") and reduced
to mean, sample std (n-1; null for a single seed), min, max and n, under metric-style keys
(RunSummary.metrics): `test/clean_accuracy`, `test/robust_accuracy/pgd_l2@4`,
`test/robust_accuracy/min_l2@4` (against all attacks), `fine/test/clean_accuracy`,
`corr/robust/0`, `corr/cluster/3` (max over neurons of the final cosine with cluster mean j).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from advcore import __version__ as ADVCORE_VERSION
from advcore.cost import Cost
from advcore.spec import ExperimentSpec, metric_order
from advcore.stats import mean, sample_std
from advcore.summary import RunSummary
from lab.config import Settings
from service.admission import (SWEEP_QUANTITIES, dominant_field, fmt, limits_for, price,
                               queue_kind, refusals, resolve)
from service.errors import Conflict, FieldError, LimitExceeded, OverEstimate, Refusal
from service.experiments import LOCAL, Enqueue, enqueue_after_commit
from service.limits import check_limits
from service.spec_paths import json_path, spec_path_exists
from service import quotas
from service.auth import Principal
from lab.dotted import set_path
from lab.status import STATUSES, TERMINAL
from lab.store.base import Experiment, NewSweepMember, QuotaExceeded, Store, Sweep

SeedMode = Literal["batched", "separate"]
FORBIDDEN_GRID_PATHS = {"seed", "seeds", "name", "tags", "advlab_version"}


class SweepCreate(BaseModel):
    """A sweep request: `base` spec + `grid` {dotted spec path: [values]} + `seeds`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("sweep", max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=32)
    base: dict[str, Any] = Field(default_factory=dict,
                                 description="Base experiment spec (every field has a default).")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted spec path → values, e.g. {\"training.mode\": [\"standard\", "
                    "\"adversarial\"]}; the members are the cartesian product, in this order.")
    seeds: list[int] | None = Field(
        None, min_length=1, max_length=64,
        description="Seeds of every grid point (default: the base spec's seeds, else its seed).")
    seed_mode: SeedMode = Field(
        "batched", description="batched: one member per grid point training all its seeds as "
                               "one batched job; separate: one member per (point, seed).")

    @field_validator("grid")
    @classmethod
    def _check_grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in grid.items():
            if path in FORBIDDEN_GRID_PATHS:
                raise ValueError(f"grid path {path!r} is not allowed (use the sweep's `seeds`, "
                                 "`name` and `tags`)")
            if not spec_path_exists(path.split(".")):
                raise ValueError(f"grid path {path!r}: no such spec field")
            if not values:
                raise ValueError(f"grid path {path!r} needs at least one value")
        return grid

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None:
            if len(set(seeds)) != len(seeds):
                raise ValueError("seeds must be distinct")
            if any(not 0 <= s <= 2**31 - 1 for s in seeds):
                raise ValueError("seeds must be in [0, 2^31 - 1]")
        return seeds


# --------------------------------------------------------------------------- expansion


def grid_points(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """The cartesian product as {path: value, ...} points, first path varying slowest (lazy:
    nothing is built before the member count has been checked)."""
    paths = list(grid)
    return (dict(zip(paths, combo)) for combo in itertools.product(*(grid[p] for p in paths)))


def member_count(req: SweepCreate, seeds: list[int]) -> int:
    """Members a request makes, from the grid's shape alone: the product of the axis lengths
    (x seeds when each seed is its own member)."""
    points = math.prod(len(values) for values in req.grid.values())
    return points * (1 if req.seed_mode == "batched" else len(seeds))


def point_label(point: dict[str, Any]) -> str:
    """`training.mode=adversarial, learner.width=64` (the base spec itself: `base`)."""
    if not point:
        return "base"
    return ", ".join(f"{path}={json.dumps(v) if not isinstance(v, str) else v}"
                     for path, v in point.items())


def _member_error(exc: ValidationError, point: dict[str, Any], index: int) -> FieldError:
    err = exc.errors()[0]
    path = json_path(err["loc"])
    dotted = ".".join(map(str, path))
    culprit = next((p for p in point if dotted == p or dotted.startswith(p + ".")), None)
    loc: list[str | int] = (["body", "grid", culprit, list(point).index(culprit)]
                            if culprit else ["body", "base", *path])
    return FieldError(loc, f"grid point {index} ({point_label(point)}): "
                           f"{dotted + ': ' if dotted else ''}{err['msg']}", err.get("type", ""))


@dataclass(frozen=True)
class Planned:
    """A member experiment ready to store, with the estimate it was admitted on."""

    member: NewSweepMember
    cost: Cost
    queue: str  # cpu | gpu


def _base_spec(req: SweepCreate) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(req.base)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise FieldError(["body", "base", *json_path(err["loc"])],
                         f"base: {err['msg']}", err.get("type", "")) from None


def sweep_loc(path: tuple, point: dict[str, Any]) -> list[str | int]:
    """A member spec's JSON path as a path in the sweep request: the grid axis that sets it,
    the sweep's `seeds`, or the base spec."""
    dotted = ".".join(map(str, path))
    axis = next((p for p in point if dotted == p or dotted.startswith(p + ".")), None)
    if axis is not None:
        return ["body", "grid", axis]
    if path[:1] in (("seed",), ("seeds",)):
        return ["body", "seeds"]
    return ["body", "base", *path]


def _in_request(refusal: Refusal, point: dict[str, Any], index: int) -> Refusal:
    loc = sweep_loc(tuple(refusal.loc[1:]), point)
    return replace(refusal, loc=loc, msg=f"grid point {index} ({point_label(point)}): "
                                         f"{refusal.msg}")


def expand(req: SweepCreate, settings: Settings) -> list[Planned]:
    """The member experiments of a sweep request, validated, resolved, priced and admitted one
    by one (not stored). The member count is checked from the grid's shape first, so a huge
    grid is refused before a single point is built."""
    base = _base_spec(req)
    seeds = list(req.seeds or base.seed_list)
    n_members = member_count(req, seeds)
    if n_members > settings.max_sweep_members:
        raise LimitExceeded("max_sweep_members", n_members, settings.max_sweep_members,
                            ["body", "grid"])
    planned: list[Planned] = []
    for index, point in enumerate(grid_points(req.grid)):
        doc = copy.deepcopy(req.base)
        doc.pop("seed", None)
        doc.pop("seeds", None)
        for path, value in point.items():
            try:
                set_path(doc, path, value)
            except ValueError as exc:
                raise FieldError(["body", "grid", path], f"grid path {path!r}: the base spec "
                                 f"cannot take it ({exc})", "value_error") from None
        doc["name"] = f"{req.name} [{point_label(point)}]"
        doc["tags"] = list(dict.fromkeys([*doc.get("tags", []), *req.tags]))
        groups = [seeds] if req.seed_mode == "batched" else [[s] for s in seeds]
        for group in groups:
            body = {**doc, "seeds": group} if len(group) > 1 else {**doc, "seed": group[0]}
            if req.seed_mode == "separate":
                body["name"] = f"{doc['name']} seed={group[0]}"
            try:
                spec = ExperimentSpec.model_validate(body)
            except ValidationError as exc:
                raise _member_error(exc, point, index) from None
            check_limits(spec, settings)
            resolved = resolve(spec)  # once: priced, hashed and stored as is
            queue = quotas.queue_for(resolved.device, settings)
            cost = price(resolved)
            refused = refusals(cost, limits_for(queue, settings))
            if refused:
                raise OverEstimate([_in_request(r, point, index) for r in refused])
            resolved.advlab_version = ADVCORE_VERSION
            planned.append(Planned(NewSweepMember(
                name=resolved.name, tags=list(resolved.tags),
                spec=resolved.model_dump(mode="json"), spec_hash=resolved.spec_hash(),
                total_steps=resolved.total_steps, point_index=index, point=point,
                seeds=list(group), queue=queue), cost, queue_kind(queue, settings)))
    admit_whole(planned, settings)
    return planned


def admit_whole(planned: list[Planned], settings: Settings) -> None:
    """The members' summed compute and stored bytes against the sweep limits (413 naming the
    heaviest member's driving field). Peak memory is per member: members run one per job."""
    refused = []
    for quantity, (name, unit, scale, words) in SWEEP_QUANTITIES.items():
        total = sum(getattr(p.cost, quantity) for p in planned)
        limit = getattr(settings, name) * scale
        if total <= limit:
            continue
        heaviest = max(planned, key=lambda p: getattr(p.cost, quantity))
        loc, path = dominant_field(heaviest.cost, quantity)
        refused.append(Refusal(
            quantity=quantity, limit_name=name, estimate=total, maximum=limit, queue="sweep",
            loc=sweep_loc(loc, heaviest.member.point) if loc else ["body", "grid"], path=path,
            msg=f"estimated {words} {fmt(total, unit, scale)} ({len(planned)} members) "
                f"exceeds the limit {name} = {fmt(limit, unit, scale)} (configurable: "
                f"ADVLAB_{name.upper()}); lower the number of members"
                + (f" or {path}" if path else "")))
    if refused:
        raise OverEstimate(refused)


def estimate_sweep(req: SweepCreate, settings: Settings) -> dict[str, Any]:
    """A sweep's estimate without storing anything: totals (peak: the largest member's), the
    sweep limits and one line per member; raises exactly what `create` would."""
    planned = expand(req, settings)
    return {
        "dry_run": True, "n_members": len(planned),
        "flops": sum(p.cost.flops for p in planned),
        "gflop": sum(p.cost.flops for p in planned) / 1e9,
        "peak_bytes": max((p.cost.peak_bytes for p in planned), default=0.0),
        "stored_bytes": sum(p.cost.stored_bytes for p in planned),
        "limits": {q: getattr(settings, name) * scale
                   for q, (name, _u, scale, _w) in SWEEP_QUANTITIES.items()},
        "members": [{"point_index": p.member.point_index, "point": p.member.point,
                     "seeds": p.member.seeds, "queue": p.queue, "flops": p.cost.flops,
                     "peak_bytes": p.cost.peak_bytes, "stored_bytes": p.cost.stored_bytes,
                     "n_evaluations": p.cost.n_evaluations,
                     "dominant": {q: p.cost.path(q) for q in Cost.QUANTITIES}}
                    for p in planned]}


def create(store: Store, settings: Settings, enqueue: Enqueue, req: SweepCreate,
           idempotency_key: str | None = None, *, user: Principal | None = None,
           priority: int = 0) -> tuple[Sweep, bool]:
    """Expand, store the sweep and all members in one transaction, then enqueue each member.
    A replay of this user's Idempotency-Key returns the stored sweep and enqueues nothing. The
    members count against the user's quota (429, the whole sweep or nothing) and are the
    user's."""

    user = user or LOCAL
    members = [p.member for p in expand(req, settings)]
    quotas.check_priority(user, priority, settings)
    grid = [(path, list(values)) for path, values in req.grid.items()]
    seeds = list(req.seeds or _base_spec(req).seed_list)
    try:
        sweep, experiments, created = store.create_sweep(
            name=req.name, tags=list(req.tags), base_spec=req.base, grid=grid, seeds=seeds,
            seed_mode=req.seed_mode, members=members, idempotency_key=idempotency_key,
            owner=user.name, priority=priority, max_active=settings.max_active_per_user)
    except QuotaExceeded as exc:  # the whole sweep is refused: nothing was stored
        raise quotas.over_quota(user, settings, exc) from None
    if not created:
        if (sweep.grid, sweep.seeds, sweep.seed_mode) != (grid, seeds, req.seed_mode):
            raise Conflict(f"Idempotency-Key {idempotency_key!r} was already used for sweep "
                           f"{sweep.id} with a different request")
        return sweep, False
    for exp in experiments:
        enqueue_after_commit(enqueue, exp)
    return sweep, True


def cancel(store: Store, sweep_id: str) -> list[Experiment]:
    """Cancel every member that is still queued or running (the others are left alone)."""
    from lab.store.base import IllegalTransition

    out = []
    for exp in store.sweep_experiments(sweep_id):
        if exp.status in TERMINAL:
            out.append(exp)
            continue
        try:
            out.append(store.request_cancel(exp.id))
        except IllegalTransition:  # it finished in between
            out.append(store.get_experiment(exp.id))
    return out


# --------------------------------------------------------------------------- aggregation


def sweep_status(counts: dict[str, int]) -> str:
    """queued (nothing started) | running | succeeded (all) | failed (any, once all are done) |
    canceled (some canceled, none failed, all done)."""
    total = sum(counts.values())
    done = sum(counts[s] for s in TERMINAL)
    if total == 0 or counts["succeeded"] == total:
        return "succeeded"
    if counts["queued"] == total:
        return "queued"
    if done < total:
        return "running"
    return "failed" if counts["failed"] else "canceled"


def per_seed(exp: Experiment, seeds: list[int]) -> list[tuple[int, dict[str, float]]]:
    """(seed, final numbers under metric-style keys) for each seed of a succeeded member."""
    summary = RunSummary.from_stored(exp.summary)
    if exp.status != "succeeded" or summary is None:
        return []
    if summary.seeds:
        return [(s.seed if s.seed is not None else seed, s.metrics())
                for s, seed in zip(summary.seeds, seeds)]
    return [(seeds[0], summary.metrics())]


def reduce(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    return {"mean": mean(finite), "std": sample_std(finite), "n": n, "min": min(finite) if n else None,
            "max": max(finite) if n else None}


def aggregate(sweep: Sweep, experiments: Iterable[Experiment]) -> list[dict[str, Any]]:
    """One row per grid point: its seeds, member status counts and mean ± std per metric."""
    by_id = {e.id: e for e in experiments}
    rows: dict[int, dict[str, Any]] = {}
    for member in sweep.members:
        row = rows.setdefault(member.point_index, {
            "point_index": member.point_index, "point": member.point,
            "label": point_label(member.point), "counts": {s: 0 for s in STATUSES},
            "seeds": [], "experiment_ids": [], "_values": {}})
        exp = by_id.get(member.experiment_id)
        if exp is None:  # deleted member
            continue
        row["counts"][exp.status] += 1
        row["experiment_ids"].append(exp.id)
        for seed, numbers in per_seed(exp, member.seeds):
            row["seeds"].append(seed)
            for key, value in numbers.items():
                row["_values"].setdefault(key, []).append(value)
    out = []
    for index in sorted(rows):
        row = rows[index]
        values = row.pop("_values")
        row["metrics"] = {key: reduce(values[key]) for key in sorted(values, key=metric_order)}
        out.append(row)
    return out
