"""GET /v1/compare?ids=a,b: experiments side by side."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from service import compare as svc
from service.api.deps import StoreDep
from service.api.params import ExperimentIds, ImageFormat, MaxPoints, MetricNames, Seed
from service.api.responses import IMAGE, NO_PLOT_DATA, error
from service.experiments import split_names
from service.plots import FORMATS, render

router = APIRouter(tags=["compare"])

UNKNOWN_ID = error(404, "One of the ids does not exist.")


@router.get(
    "/compare", response_model=svc.Comparison, summary="Compare experiments side by side",
    description="For 1 to 20 experiments (`ids` as a comma list or repeated): their summaries "
                "and statuses, `spec_diff` (every spec path whose value differs; name and tags "
                "left out), `summary` rows (clean / robust accuracy, correlations, duration) "
                "with one value per experiment, and `series` aligned on the union of their "
                "steps (null where an experiment has no point there; several seeds averaged per "
                "step unless `seed` is given).",
    responses={**UNKNOWN_ID, **error(422, "No ids, or more than 20.")})
def compare_experiments(
    store: StoreDep,
    ids: ExperimentIds,
    names: MetricNames = [],
    max_points: MaxPoints = None,
    seed: Seed = None,
) -> svc.Comparison:
    return svc.compare(store, svc.parse_ids(ids), names=split_names(names),
                       max_points=max_points, seed=seed)


@router.get(
    "/compare/plots/{name:path}.{fmt}", response_class=Response,
    summary="Overlay plot of several experiments",
    description="`robust_vs_radius`: final robust accuracy against radius, one line per "
                "experiment × attack (`attack` keeps one); any metric name (e.g. "
                "`test/clean_accuracy`, `corr/cluster/0`): its trajectory, one mean ± std band "
                "per experiment. Legends name each experiment by short id and what differs in "
                "its spec. 404 for an unknown id; 409 when none has the data (yet).",
    responses={**IMAGE, **UNKNOWN_ID, **NO_PLOT_DATA})
def compare_plot(
    store: StoreDep,
    name: Annotated[str, Path(description="robust_vs_radius or a metric name.")],
    fmt: ImageFormat,
    ids: ExperimentIds,
    seed: Seed = None,
    attack: Annotated[str | None, Query(description="robust_vs_radius: only this attack "
                                                    "label, e.g. pgd_l2.")] = None,
) -> Response:
    fig = svc.compare_figure(store, svc.parse_ids(ids), name, seed=seed, attack=attack)
    return Response(render(fig, fmt), media_type=FORMATS[fmt], headers={"Cache-Control": "no-store"})
