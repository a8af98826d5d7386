"""HTTP schemas by role. The request body of a submit IS the experiment spec (advcore.spec), so
the service and local runs validate exactly the same thing; responses are built from the store's
domain objects by the service functions in service/experiments.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from advcore.spec import ExperimentSpec
from advcore.summary import RunSummary

from lab.status import Status

# The submit body: the full spec, every field optional with a documented default.
ExperimentCreate = ExperimentSpec


class Links(BaseModel):
    self: str
    metrics: str
    correlations: str
    cancel: str
    retry: str


class Submitted(BaseModel):
    """Answer to a submit or a retry: the new (or, on an Idempotency-Key replay, the old) job."""

    id: str
    status: Status
    links: Links


class Progress(BaseModel):
    step: int = Field(description="Last completed step (epoch).")
    total: int = Field(description="Total steps (training.epochs).")
    fraction: float = Field(description="step / total, in [0, 1].")
    eta_s: float | None = Field(
        None, description="Estimated seconds left (running jobs with progress only).")


class ExperimentRead(BaseModel):
    id: str
    name: str
    tags: list[str]
    status: Status
    spec: dict[str, Any] = Field(description="The resolved spec (every default filled in).")
    spec_hash: str = Field(description="sha256 of the canonical spec (name and tags excluded).")
    advlab_version: str | None = Field(None, description="advlab version that accepted the spec.")
    progress: Progress
    attempts: int = Field(description="How many times a worker started it (re-queues add one).")
    worker: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None
    summary: RunSummary | None = Field(
        None, description="Final summary once succeeded (scalars only; matrices are at "
                          "/correlations?step=): clean accuracy, each attack's robust accuracy "
                          "and the minimum over attacks per threat and radius, disagreements "
                          "between attacks, final correlations, masking flags.")
    retry_of: str | None = Field(None, description="The experiment this one retries.")
    links: Links
    owner: str | None = Field(None, description="User who submitted it (`local` with auth off).")
    priority: int = Field(0, description="Orders the owner's own jobs (higher first).")
    queue: str | None = Field(None, description="Worker queue it was routed to (by `device`).")
    notes: str | None = Field(None, description="Free-text note (PATCH to edit).")


Tag = Annotated[str, Field(min_length=1, max_length=64)]
MAX_NOTES = 10_000


class ExperimentUpdate(BaseModel):
    """What may change after submission: the tags and the notes. The resolved spec (and its
    hash) keep what was submitted; list filters and the dashboard use these fields."""

    model_config = ConfigDict(extra="forbid")

    tags: list[Tag] | None = Field(None, max_length=32,
                                   description="Replaces every tag (same limits as the spec).")
    notes: str | None = Field(None, max_length=MAX_NOTES,
                              description="Replaces the note; an empty string clears it.")


class ExperimentPage(BaseModel):
    items: list[ExperimentRead]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page.")


class Series(BaseModel):
    name: str
    seed: int
    points: list[tuple[int, float]] = Field(description="[[step, value], ...] sorted by step.")


class MetricsRead(BaseModel):
    experiment_id: str
    series: list[Series]


class CorrelationsRead(BaseModel):
    """Per-feature correlation trajectories (`corr/*` series) and which matrices exist."""

    experiment_id: str
    series: list[Series]
    matrices: dict[str, list[int]] = Field(
        description="Matrix name → steps at which a full neuron × feature matrix is stored.")


class MatrixRead(BaseModel):
    """One full neuron × feature matrix (e.g. `cosine/cluster`) at one step for one seed."""

    experiment_id: str
    name: str
    step: int
    seed: int
    rows: int
    cols: int
    values: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description='JSON path, e.g. ["body", "data", "d"].')
    msg: str
    type: str
    # a 413 from the estimate (type `limit.max_gflop`, ...) also carries:
    quantity: Literal["flops", "peak_bytes", "stored_bytes"] | None = Field(
        None, description="The estimated quantity over its limit.")
    estimate: float | None = Field(None, description="Its estimate (FLOPs or bytes).")
    limit: float | None = Field(None, description="The configured limit, same unit.")
    queue: str | None = Field(None, description="cpu | gpu (the job's queue) or sweep.")
    path: str | None = Field(None, description="The spec field that dominates the estimate, "
                                                "e.g. `evaluation.attacks[0].steps`.")


class EstimateTerm(BaseModel):
    name: str = Field(description="What it counts: `training`, `evaluation.attacks[0]`, `data`.")
    value: float
    path: str | None = Field(description="The spec field this term scales with most.")


class EstimateRead(BaseModel):
    """advcore.cost.estimate of a spec (POST /v1/experiments?dry_run=true): nothing stored."""

    dry_run: Literal[True] = True
    flops: float = Field(description="Floating point operations (2 per multiply-add).")
    gflop: float
    peak_bytes: float = Field(description="Peak memory (host, or device on a GPU), all seeds.")
    stored_bytes: float = Field(description="Bytes the run adds to the database.")
    n_evaluations: int
    peak_phase: str = Field(description="The phase at the memory peak (data, training, ...).")
    dominant: dict[str, str | None] = Field(
        description="Quantity -> the spec field to lower to reduce it.")
    terms: dict[str, list[EstimateTerm]]
    queue: Literal["cpu", "gpu"]
    limits: dict[str, float] = Field(description="The queue's limits: flops, peak_bytes, "
                                                 "stored_bytes (ADVLAB_[CPU_|GPU_]MAX_*).")


class Error(BaseModel):
    """Every error body: `detail` is a message, or a list of field errors (422 / 413 limits)."""

    detail: str | list[ErrorItem]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    broker: str
    version: str
