"""Query, path and header parameters the routes share, as named types (like the dependencies in
service/api/deps.py): each bound and each OpenAPI text is written once, here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query

from service.quotas import ADMIN_MAX_PRIORITY

INT32_MAX = 2**31 - 1  # seeds and steps are 32-bit integers in the store (and in the spec)


def int32_query(description: str) -> Any:
    """A seed or a step: a 32-bit integer >= 0, with what it selects."""
    return Query(ge=0, le=INT32_MAX, description=description)


Seed = Annotated[int | None, int32_query("Only this seed of a batched run.")]
SinceStep = Annotated[int | None, int32_query("Only points with step >= this.")]
MaxPoints = Annotated[int | None, Query(
    ge=4, le=100_000, description="Downsample each (name, seed) series to at most this many "
                                  "points, keeping its first, last, min and max.")]
MetricNames = Annotated[list[str], Query(
    description="Metric names (comma list or repeated); all when absent.")]
ExperimentIds = Annotated[list[str], Query(
    description="Experiment ids (comma list or repeated).")]
PageLimit = Annotated[int, Query(ge=1, le=500)]

Priority = Annotated[int, Query(ge=-ADMIN_MAX_PRIORITY, le=ADMIN_MAX_PRIORITY, description=(
    "Orders this user's own queued jobs, higher first (a sweep: each of its members); never "
    "lets one user starve another. Non-admins: |priority| <= ADVLAB_MAX_PRIORITY."))]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200,
    description="Client-chosen key that makes retrying this request safe.")]

ImageFormat = Annotated[Literal["png", "svg"], Path(description="Image format.")]
TableFormat = Annotated[Literal["csv", "parquet"], Path(description="File format.")]
