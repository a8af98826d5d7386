"""GET /v1/experiments/{id}/export.{csv,parquet}: every recorded series as one table."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import ExperimentDep, StoreDep
from service.api.params import TableFormat
from service.api.responses import TABLE, error
from service.export import COLUMNS, FORMATS, attachment, export_experiment

router = APIRouter(prefix="/experiments", tags=["export"])


@router.get(
    "/{experiment_id}/export.{fmt}", response_class=Response,
    summary="Export all recorded series",
    description=f"Long form, one row per point, columns {', '.join(COLUMNS)}; every point "
                "(no downsampling), sorted by name, seed, step. Parquet files also carry the "
                "resolved spec and the summary as JSON in the schema metadata (`advlab.spec`, "
                "`advlab.summary`). A queued experiment exports the header only.",
    responses={**TABLE, **error(404, "No experiment with that id.")})
def export_series(
    experiment: ExperimentDep, store: StoreDep,
    fmt: TableFormat,
) -> Response:
    content = export_experiment(store, experiment, fmt)
    return Response(content, media_type=FORMATS[fmt],
                    headers=attachment(f"advlab-{experiment.id}.{fmt}"))
