"""/v1/sweeps: a base spec + grid over spec paths + seeds → member experiments, one sweep id.
Thin: parse → call service/sweeps.py or service/sweep_views.py → return a schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from service import sweep_views as views
from service import sweeps as svc
from service.api.deps import EnqueueDep, OwnedSweepDep, SettingsDep, StoreDep, SweepDep
from service.api.params import IdempotencyKey, ImageFormat, PageLimit, Priority, TableFormat
from service.api.responses import IMAGE, TABLE, error
from service.auth import UserDep
from service.export import FORMATS as EXPORT_FORMATS
from service.export import attachment
from service.plots import FORMATS as PLOT_FORMATS
from service.schemas import Error

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

E404 = {404: {"model": Error, "description": "No sweep with that id."}}


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=views.SweepCreated,
    summary="Start a sweep",
    description="`base` is an experiment spec; `grid` maps dotted spec paths to value lists "
                "(`{\"training.mode\": [\"standard\", \"adversarial\"]}`); the cartesian "
                "product of the grid is crossed with `seeds`. With `seed_mode: batched` (the "
                "default) each grid point is ONE experiment training all seeds as a batched "
                "computation (`seeds: [...]`); with `separate`, one experiment per (point, "
                "seed). Every member is validated as a full spec (422 naming the grid path or "
                "base field at fault) and checked against the limits (413). The member count "
                "comes from the grid's shape before anything is expanded (`max_sweep_members`); "
                "each member is priced (advcore.cost) and admitted against its queue's limits, "
                "and the members' summed compute and stored bytes against the sweep limits "
                "(413 items name the estimate, the limit and the grid or base field to lower). "
                "The sweep and all members are committed in one transaction, then enqueued. "
                "`?dry_run=true` stops before storing and returns the estimate. "
                "`Idempotency-Key` makes retries safe (replay: 200, nothing enqueued).",
    responses={200: {"model": views.SweepCreated | views.SweepEstimateRead,
                     "description": "Idempotency-Key replay (SweepCreated), or with "
                                    "`dry_run=true` the estimate (SweepEstimateRead)."},
               409: {"model": Error, "description": "Idempotency-Key reused for another "
                                                    "sweep request."},
               413: {"model": Error, "description": "A configured limit exceeded: the member "
                                                    "count, a member's size or estimate, or the "
                                                    "sweep's total estimate."},
               429: {"model": Error, "description": "Over the user's quota of queued + "
                                                    "running jobs; see Retry-After."},
               422: {"model": Error, "description": "Invalid request or member spec."}})
def create_sweep(
    body: svc.SweepCreate, store: StoreDep, settings: SettingsDep, enqueue: EnqueueDep,
    response: Response, user: UserDep,
    idempotency_key: IdempotencyKey = None,
    priority: Priority = 0,
    dry_run: Annotated[bool, Query(description=(
        "Expand, price and admit the sweep, store nothing: 200 with the total and per-member "
        "estimate, or the same 413/422 a real submit would get."))] = False,
) -> views.SweepCreated | Response:
    if dry_run:
        estimate = views.SweepEstimateRead.model_validate(svc.estimate_sweep(body, settings))
        return Response(estimate.model_dump_json(), media_type="application/json")
    sweep, created = svc.create(store, settings, enqueue, body, idempotency_key, user=user,
                                priority=priority)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = views.links(sweep.id).self
    summary = views.to_summary(sweep, store.sweep_experiments(sweep.id))
    return views.SweepCreated(id=sweep.id, status=summary.status,
                              experiment_ids=[m.experiment_id for m in sweep.members],
                              links=views.links(sweep.id))


@router.get("", response_model=list[views.SweepSummary], summary="List sweeps",
            description="Newest first, with status counts of their members.")
def list_sweeps(store: StoreDep,
                limit: PageLimit = 50) -> list[views.SweepSummary]:
    return [views.to_summary(s, store.sweep_experiments(s.id))
            for s in store.list_sweeps(limit=limit)]


@router.get(
    "/{sweep_id}", response_model=views.SweepRead, summary="Read a sweep",
    description="Members (with their status and progress), status counts, and the aggregate "
                "table: for each grid point, mean ± sample std over seeds (and n, min, max) of "
                "every final number in the members' summaries (clean and robust accuracies, "
                "final per-class / per-cluster correlations). Only succeeded members count.",
    responses={**E404})
def read_sweep(sweep: SweepDep, store: StoreDep) -> views.SweepRead:
    return views.read(store, sweep)


@router.post(
    "/{sweep_id}/cancel", response_model=views.SweepRead, summary="Cancel a sweep",
    description="Cancels every member still queued or running; finished members are kept.",
    responses={**E404, 403: {"model": Error, "description": "Only the owner or an admin."}})
def cancel_sweep(sweep: OwnedSweepDep, store: StoreDep) -> views.SweepRead:
    svc.cancel(store, sweep.id)
    return views.read(store, sweep)


@router.get(
    "/{sweep_id}/export.{fmt}", response_class=Response, summary="Export a sweep's series",
    description="Every recorded point of every member as one long-form table: one column per "
                "grid path, then `experiment_id, name, seed, step, value`. Parquet carries the "
                "grid, seeds, base spec and aggregate table as JSON schema metadata.",
    responses={**TABLE, **E404})
def export_sweep(sweep: SweepDep, store: StoreDep,
                 fmt: TableFormat) -> Response:
    return Response(views.export(store, sweep, fmt), media_type=EXPORT_FORMATS[fmt],
                    headers=attachment(f"sweep-{sweep.id}.{fmt}"))


@router.get(
    "/{sweep_id}/plots/{metric:path}.{fmt}", response_class=Response,
    summary="Mean ± std band plot of one metric over a sweep",
    description="One line per grid point: the mean over seeds of the metric's series "
                "(e.g. `test/clean_accuracy`, `test/robust_accuracy/pgd_l2@1`) with a ± std "
                "band. 404 for an unknown sweep; 409 while no member has recorded the metric.",
    responses={**IMAGE, **E404, **error(409, "No data for this metric (yet).")})
def plot_sweep(sweep: SweepDep, store: StoreDep,
               metric: Annotated[str, Path(description="Metric name (may contain `/`).")],
               fmt: ImageFormat) -> Response:
    return Response(views.plot(store, sweep, metric, fmt), media_type=PLOT_FORMATS[fmt],
                    headers={"Cache-Control": "no-store"})
