"""GET /v1/experiments/{id}/plots/{name}.{png,svg}: rendered plots of one experiment."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from service.api.deps import ExperimentDep, StoreDep
from service.api.params import ImageFormat, int32_query
from service.api.responses import IMAGE, NO_PLOT_DATA, error
from service.experiment_plots import PLOTS, render_plot
from service.plots import FORMATS

router = APIRouter(prefix="/experiments", tags=["plots"])

_NAMES = "; ".join(f"`{name}`: {doc}" for name, doc in PLOTS.items())


@router.get(
    "/{experiment_id}/plots/{name}.{fmt}", response_class=Response,
    summary="A rendered plot of an experiment",
    description=f"Plots: {_NAMES} With several seeds, lines are means with ± std bands. "
                "404 for an unknown experiment or plot name (or `matrix`); 409 while the data "
                "the plot needs does not exist (queued, or running before its first "
                "evaluation; `robust_vs_radius` without attacks; `correlations` without "
                "`record: correlations`). Not cached: a running experiment's plot grows.",
    responses={**IMAGE, **error(404, "Unknown experiment, plot or matrix."), **NO_PLOT_DATA})
def read_plot(
    experiment: ExperimentDep, store: StoreDep,
    name: Annotated[str, Path(description=f"One of {', '.join(PLOTS)}.")],
    fmt: ImageFormat,
    seed: Annotated[int | None, int32_query("Only this seed (default: all seeds as mean ± std; "
                                            "cosine: the first).")] = None,
    step: Annotated[int | None, int32_query("cosine: the matrix at this epoch (default: "
                                            "latest).")] = None,
    matrix: Annotated[str | None, Query(description="cosine: one matrix, e.g. cosine/cluster "
                                                    "(default: all side by side).")] = None,
) -> Response:
    content = render_plot(store, experiment, name, fmt, seed=seed, step=step, matrix=matrix)
    return Response(content, media_type=FORMATS[fmt], headers={"Cache-Control": "no-store"})
