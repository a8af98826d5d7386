"""/v1/experiments: submit, list, read, cancel, retry, delete, metrics, correlations.
Thin: parse → call a service function (service/experiments.py) → return a schema."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel

from service import experiments as svc
from service.api.deps import EnqueueDep, ExperimentDep, OwnedExperimentDep, SettingsDep, StoreDep
from service.api.params import (IdempotencyKey, MaxPoints, MetricNames, PageLimit, Priority,
                                Seed, SinceStep, int32_query)
from service.auth import UserDep
from service.schemas import (CorrelationsRead, Error, EstimateRead, ExperimentCreate,
                             ExperimentPage, ExperimentRead, ExperimentUpdate, MatrixRead,
                             MetricsRead, Status, Submitted)

router = APIRouter(prefix="/experiments", tags=["experiments"])

E404 = {404: {"model": Error, "description": "No experiment with that id."}}
E409 = {409: {"model": Error, "description": "Not allowed in the experiment's current status."}}
E413 = {413: {"model": Error, "description": "Body over max_body_bytes, a spec over a "
                                              "configured size limit (the limit is named), or "
                                              "a spec whose estimated peak memory, compute or "
                                              "stored data exceeds its queue's limit: each item "
                                              "names the `estimate`, the `limit`, the `queue` "
                                              "and the `path` of the field to lower."}}
E415 = {415: {"model": Error, "description": "The body was not sent as application/json."}}
E422 = {422: {"model": Error, "description": "Invalid input; `loc` is the JSON path of each "
                                              "offending field, e.g. [\"body\", \"data\", \"d\"]."}}
E403 = {403: {"model": Error, "description": "Only the owner or an admin may do this."}}
E429 = {429: {"model": Error, "description": "Over the user's quota of queued + running jobs "
                                              "(ADVLAB_MAX_ACTIVE_PER_USER); see Retry-After."}}


def _json(model: BaseModel) -> Response:
    """Serialise a large read model directly: FastAPI would dump it to dicts and validate 10^5
    points again against the response model (which still documents the shape)."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=Submitted,
    summary="Submit an experiment",
    description="The body is the experiment spec (every field has a default). It is validated, "
                "checked against the configured size limits, priced (advcore.cost: peak "
                "memory, GFLOP, stored bytes) and admitted against its queue's limits (413 "
                "naming the estimate, the limit and the field to lower), stored in resolved "
                "form with its hash and the advlab version, committed, and only then enqueued "
                "for a worker. `?dry_run=true` stops before storing and returns the estimate. "
                "With an `Idempotency-Key` header a replay returns the original experiment with "
                "200 instead of 202 and enqueues nothing; the same key with a different spec is "
                "a 409.",
    responses={200: {"model": Submitted | EstimateRead,
                     "description": "Idempotency-Key replay (Submitted), or with "
                                    "`dry_run=true` the estimate (EstimateRead)."},
               **E409, **E413, **E415, **E422, **E429})
def submit_experiment(
    spec: ExperimentCreate, store: StoreDep, settings: SettingsDep, enqueue: EnqueueDep,
    response: Response, user: UserDep,
    idempotency_key: IdempotencyKey = None,
    priority: Priority = 0,
    dry_run: Annotated[bool, Query(description=(
        "Validate, estimate and admit the spec, store nothing: 200 with the estimate (FLOPs, "
        "peak memory, stored bytes, the field driving each) and the queue's limits, or the "
        "same 413/422 a real submit would get."))] = False,
) -> Submitted | Response:
    if dry_run:
        return _json(svc.estimate(settings, spec))
    exp, created = svc.submit(store, settings, enqueue, spec, idempotency_key, user=user,
                              priority=priority)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = svc.links(exp.id).self
    return svc.submitted(exp)


@router.get(
    "", response_model=ExperimentPage, summary="List experiments",
    description="Newest first by default; cursor pagination (pass `next_cursor` back as "
                "`cursor`). Filters combine with AND: `status` (repeatable: any of), `tag`, "
                "`name` (substring), and spec fields as `spec.<path>=<value>` query parameters, "
                "e.g. `?spec.data.kind=patch&spec.learner.width=64`.",
    responses={**E422})
def list_experiments(
    request: Request, store: StoreDep, user: UserDep,
    status_: Annotated[list[Status], Query(alias="status", description="Any of these.")] = [],
    tag: Annotated[str | None, Query(description="Has this tag.")] = None,
    name: Annotated[str | None, Query(description="Name contains this.")] = None,
    order: Annotated[Literal["created_desc", "created_asc"], Query()] = "created_desc",
    limit: PageLimit = 50,
    cursor: Annotated[str | None, Query(description="Opaque; from next_cursor.")] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=64, description=(
        "Only this user's experiments; `me` is the caller."))] = None,
) -> ExperimentPage:
    spec_fields = {key[len("spec."):]: value for key, value in request.query_params.items()
                   if key.startswith("spec.") and len(key) > len("spec.")}
    return svc.list_page(store, status=status_, tag=tag, name=name, spec_fields=spec_fields,
                         limit=limit, cursor=cursor, order=order,
                         owner=user.name if owner == "me" else owner)


@router.get(
    "/{experiment_id}", response_model=ExperimentRead, summary="Read an experiment",
    description="Resolved spec, status, progress (step/total, fraction, ETA), timestamps, "
                "worker, attempts, error, and the final summary once succeeded.",
    responses={**E404})
def read_experiment(experiment: ExperimentDep) -> ExperimentRead:
    return svc.to_read(experiment)


@router.patch(
    "/{experiment_id}", response_model=ExperimentRead, summary="Edit tags and notes",
    description="Replaces the tags and/or the free-text notes of an experiment in any status "
                "(absent field: unchanged; `\"notes\": \"\"` clears the note). The resolved "
                "spec and its hash keep what was submitted; the `tag` filter follows the new "
                "tags. Only the owner or an admin; with the dashboard's session cookie the "
                "request needs its `X-CSRF-Token`.",
    responses={**E403, **E404, **E415, **E422})
def update_experiment(change: ExperimentUpdate, experiment: OwnedExperimentDep,
                      store: StoreDep) -> ExperimentRead:
    return svc.update(store, experiment, change)


@router.post(
    "/{experiment_id}/cancel", response_model=ExperimentRead, summary="Cancel an experiment",
    description="A queued job is canceled at once; a running job gets `cancel_requested` and "
                "its worker stops it within about a second, even inside a long evaluation "
                "(status then becomes `canceled`). Canceling a finished (succeeded, failed or "
                "canceled) job is a 409.",
    responses={**E403, **E404, **E409})
def cancel_experiment(experiment: OwnedExperimentDep, store: StoreDep) -> ExperimentRead:
    return svc.to_read(svc.cancel(store, experiment.id))


@router.post(
    "/{experiment_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=Submitted,
    summary="Retry a failed or canceled experiment",
    description="Creates and enqueues a NEW experiment with the same resolved spec and "
                "`retry_of` pointing at this one. Any other status is a 409.",
    responses={**E403, **E404, **E409, **E429})
def retry_experiment(experiment: OwnedExperimentDep, store: StoreDep, enqueue: EnqueueDep,
                     response: Response, user: UserDep, settings: SettingsDep) -> Submitted:
    exp = svc.retry(store, enqueue, experiment, user=user, settings=settings)
    response.headers["Location"] = svc.links(exp.id).self
    return svc.submitted(exp)


@router.delete(
    "/{experiment_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
    summary="Delete an experiment with its data",
    description="Deletes the experiment, its metric points and matrices. A queued or running "
                "experiment is canceled first (so its worker stops it within about a second), then "
                "deleted in the same request.",
    responses={**E403, **E404})
def delete_experiment(experiment: OwnedExperimentDep, store: StoreDep) -> Response:
    svc.delete(store, experiment)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{experiment_id}/metrics", response_model=MetricsRead, summary="Metric series",
    description="Series of `(step, value)` points per (name, seed), e.g. `train/loss`, "
                "`test/robust_accuracy/pgd_l2@4`, `corr/cluster/3`. `names` is a comma list "
                "or repeated; `max_points` downsamples in the database.",
    responses={**E404, **E422})
def read_metrics(
    experiment: ExperimentDep, store: StoreDep,
    names: MetricNames = [],
    max_points: MaxPoints = None, since_step: SinceStep = None, seed: Seed = None,
) -> Response:
    return _json(svc.read_metrics(store, experiment, names=svc.split_names(names),
                                  since_step=since_step, max_points=max_points, seed=seed))


@router.get(
    "/{experiment_id}/correlations", response_model=CorrelationsRead | MatrixRead,
    summary="Correlation trajectories, or one full matrix",
    description="Without `step`/`name`: every `corr/*` series (per-feature correlation over "
                "steps) plus the stored matrix names and their steps. With `step` and/or "
                "`name`: one full neuron × feature matrix (`name` may be omitted when only one "
                "kind is recorded; `step` defaults to the latest); 404 when there is none.",
    responses={**E404, **E422})
def read_correlations(
    experiment: ExperimentDep, store: StoreDep,
    step: Annotated[int | None, int32_query("Matrix at this step.")] = None,
    name: Annotated[str | None, Query(description="Matrix name, e.g. cosine/cluster.")] = None,
    seed: Seed = None, max_points: MaxPoints = None, since_step: SinceStep = None,
) -> Response:
    if step is not None or name is not None:
        return _json(svc.read_matrix(store, experiment, name=name, step=step, seed=seed))
    return _json(svc.read_correlations(store, experiment, since_step=since_step,
                                       max_points=max_points, seed=seed))
