"""GET /v1/compare?ids=a,b: experiments side by side."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import compare as svc
from service.api.deps import StoreDep
from service.experiments import split_names
from service.schemas import Error

router = APIRouter(tags=["compare"])


@router.get(
    "/compare", response_model=svc.Comparison, summary="Compare experiments side by side",
    description="For 1 to 20 experiments (`ids` as a comma list or repeated): their summaries "
                "and statuses, `spec_diff` (every spec path whose value differs; name and tags "
                "left out), `summary` rows (clean / robust accuracy, correlations, duration) "
                "with one value per experiment, and `series` aligned on the union of their "
                "steps (null where an experiment has no point there; several seeds averaged per "
                "step unless `seed` is given).",
    responses={404: {"model": Error, "description": "One of the ids does not exist."},
               422: {"model": Error, "description": "No ids, or more than 20."}})
def compare_experiments(
    store: StoreDep,
    ids: Annotated[list[str], Query(description="Experiment ids (comma list or repeated).")],
    names: Annotated[list[str], Query(description="Metric names (comma list or repeated); all "
                                                  "when absent.")] = [],
    max_points: Annotated[int | None, Query(ge=4, le=100_000, description="Downsample each "
                                            "series in the database first.")] = None,
    seed: Annotated[int | None, Query(ge=0, description="Only this seed.")] = None,
) -> svc.Comparison:
    return svc.compare(store, svc.parse_ids(ids), names=split_names(names),
                       max_points=max_points, seed=seed)
