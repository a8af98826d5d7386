"""Service functions behind the experiment routes: routers parse, call one of these, return a
schema. Everything here talks to the store interface (lab.store.base) and to an `enqueue`
callable, never to SQL or Celery directly, so the rules live in one place:

- a job is enqueued only after its row is committed (create_experiment commits before returning);
- an enqueue failure never loses a job: the row stays `queued` and the reaper re-enqueues it;
- an Idempotency-Key replay returns the original job and enqueues nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from itertools import groupby
from operator import attrgetter
from typing import Callable, Literal, Sequence

from pydantic import ValidationError

from advcore import __version__ as ADVCORE_VERSION
from advcore.spec import ExperimentSpec
from advcore.summary import RunSummary
from service import admission, quotas
from service.auth import LOCAL_USER, Principal
from lab.config import Settings
from service.errors import Conflict, FieldError
from service.limits import check_limits
from service.schemas import (CorrelationsRead, EstimateRead, ExperimentPage, ExperimentRead,
                             ExperimentUpdate, Links, MatrixRead, MetricsRead, Progress, Series, Submitted)
from service.spec_paths import spec_path_exists
from lab.clock import utcnow
from lab.status import TERMINAL
from lab.store.base import (Experiment, ExperimentFilter, IllegalTransition,
                            MetricPoint, NotFound, QuotaExceeded, Store)

log = logging.getLogger("advlab.api")

Enqueue = Callable[[str, "str | None"], None]  # (experiment id, the queue its row was routed to)
LOCAL = Principal(LOCAL_USER, True)  # the caller when auth is off
RETRYABLE = frozenset({"failed", "canceled"})


# --------------------------------------------------------------------------- read models


def links(experiment_id: str) -> Links:
    base = f"/v1/experiments/{experiment_id}"
    return Links(self=base, metrics=f"{base}/metrics", correlations=f"{base}/correlations",
                 cancel=f"{base}/cancel", retry=f"{base}/retry")


def _eta_s(exp: Experiment, now: datetime) -> float | None:
    """Linear extrapolation of the elapsed time per step; only while running with progress."""
    if exp.status != "running" or exp.started_at is None or exp.step <= 0:
        return None
    elapsed = max((now - exp.started_at).total_seconds(), 0.0)  # aware UTC (UtcDateTime)
    return elapsed / exp.step * max(exp.total_steps - exp.step, 0)


def to_read(exp: Experiment) -> ExperimentRead:
    total = max(exp.total_steps, 0)
    fraction = min(exp.step / total, 1.0) if total else 0.0
    if exp.status == "succeeded":
        fraction = 1.0
    progress = Progress(step=exp.step, total=total, fraction=fraction,
                        eta_s=_eta_s(exp, utcnow()))
    return ExperimentRead(
        id=exp.id, name=exp.name, tags=list(exp.tags), status=exp.status, spec=exp.spec,
        spec_hash=exp.spec_hash, advlab_version=exp.spec.get("advlab_version"),
        progress=progress, attempts=exp.attempts, worker=exp.worker,
        cancel_requested=exp.cancel_requested, created_at=exp.created_at,
        started_at=exp.started_at, finished_at=exp.finished_at, heartbeat_at=exp.heartbeat_at,
        error=exp.error, summary=RunSummary.from_stored(exp.summary), retry_of=exp.retry_of,
        links=links(exp.id),
        owner=exp.owner, priority=exp.priority, queue=exp.queue, notes=exp.notes)


def submitted(exp: Experiment) -> Submitted:
    return Submitted(id=exp.id, status=exp.status, links=links(exp.id))


# --------------------------------------------------------------------------- commands


def enqueue_after_commit(enqueue: Enqueue, exp: Experiment) -> None:
    """Send the committed row's job to the queue it was routed to; a failure is logged, not
    raised: the row stays queued and the reaper re-enqueues unpicked queued jobs."""
    try:
        enqueue(exp.id, exp.queue)
    except Exception:
        log.exception("enqueue of experiment %s failed; left queued for the reaper", exp.id)


def _resolve_and_admit(spec: ExperimentSpec, settings: Settings) -> ExperimentSpec:
    """Check the size limits, resolve (once: the resolved spec is priced, hashed and stored as
    is) and admit against its queue's limits; returns the resolved spec."""
    check_limits(spec, settings)
    resolved = admission.resolve(spec)
    admission.admit(resolved, quotas.queue_for(resolved.device, settings), settings)
    return resolved


def _create(store: Store, resolved: ExperimentSpec, *, idempotency_key: str | None = None,
            retry_of: str | None = None, user: Principal = LOCAL, priority: int = 0,
            settings: Settings | None = None) -> tuple[Experiment, bool]:
    """Insert the resolved spec; with settings, within the user's quota (429 otherwise)."""
    resolved.advlab_version = ADVCORE_VERSION
    try:
        return store.create_experiment(
            name=resolved.name, tags=list(resolved.tags), spec=resolved.model_dump(mode="json"),
            spec_hash=resolved.spec_hash(), total_steps=resolved.total_steps,
            idempotency_key=idempotency_key, retry_of=retry_of, owner=user.name,
            priority=priority, queue=quotas.queue_for(resolved.device, settings or Settings()),
            max_active=settings.max_active_per_user if settings is not None else None)
    except QuotaExceeded as exc:
        raise quotas.over_quota(user, settings or Settings(), exc) from None


def submit(store: Store, settings: Settings, enqueue: Enqueue, spec: ExperimentSpec,
           idempotency_key: str | None = None, *, user: Principal = LOCAL,
           priority: int = 0) -> tuple[Experiment, bool]:
    """Check limits and the priority bound, store the resolved spec (committed) with its owner
    and queue within the user's quota (checked atomically by the store), then enqueue. Returns
    (job, created); created is False on a replay of this user's Idempotency-Key (nothing is
    enqueued again; other users' keys are invisible). Reusing a key for a different spec is a
    Conflict rather than a silent answer about another job."""
    resolved = _resolve_and_admit(spec, settings)
    quotas.check_priority(user, priority, settings)
    exp, created = _create(store, resolved, idempotency_key=idempotency_key, user=user,
                           priority=priority, settings=settings)
    if not created:
        if exp.spec_hash != resolved.spec_hash():
            raise Conflict(f"Idempotency-Key {idempotency_key!r} was already used for experiment "
                           f"{exp.id} with a different spec")
        return exp, False
    enqueue_after_commit(enqueue, exp)
    return exp, True


def estimate(settings: Settings, spec: ExperimentSpec) -> EstimateRead:
    """The estimate of a spec under its queue's limits, as submit would admit it (413 over a
    limit, exactly like submit); nothing is stored or enqueued."""
    check_limits(spec, settings)
    queue = quotas.queue_for(spec.device, settings)
    cost = admission.admit(spec, queue, settings)
    return EstimateRead.model_validate(
        admission.estimate_read(cost, admission.limits_for(queue, settings)))


def retry(store: Store, enqueue: Enqueue, old: Experiment, *, user: Principal = LOCAL,
          settings: Settings | None = None) -> Experiment:
    """A failed or canceled job → a NEW queued job with the same spec and `retry_of` set, owned
    by whoever retried it (and counted against their quota)."""
    experiment_id = old.id
    if old.status not in RETRYABLE:
        raise Conflict(f"experiment {experiment_id} is {old.status}; only failed or canceled "
                       "experiments can be retried")
    try:
        spec = ExperimentSpec.model_validate(old.spec)
    except ValidationError as exc:  # stored by an older advlab whose spec schema differed
        raise Conflict(f"the stored spec of {experiment_id} no longer validates; submit a "
                       f"corrected spec instead: {exc.errors()[0]['msg']}") from None
    if settings is not None:  # the limits may have changed since it was admitted
        resolved = _resolve_and_admit(spec, settings)
    else:
        resolved = admission.resolve(spec)
    exp, _ = _create(store, resolved, retry_of=old.id, user=user, priority=old.priority,
                     settings=settings)
    enqueue_after_commit(enqueue, exp)
    return exp


def cancel(store: Store, experiment_id: str) -> Experiment:
    """queued → canceled at once; running → cancel requested (the worker kills the job's
    process within about a second); a terminal job raises IllegalTransition (409)."""
    return store.request_cancel(experiment_id)


def update(store: Store, exp: Experiment, change: ExperimentUpdate) -> ExperimentRead:
    """New tags and/or notes (422 when the body names neither); tags keep their order, without
    duplicates."""
    if change.tags is None and change.notes is None:
        raise FieldError(["body"], "give `tags`, `notes` or both", "missing")
    tags = list(dict.fromkeys(change.tags)) if change.tags is not None else None
    return to_read(store.update_experiment(exp.id, tags=tags, notes=change.notes))


def delete(store: Store, exp: Experiment) -> None:
    """Delete a job with all its points and matrices. A queued or running job is canceled first,
    so a worker that already holds it kills the job's process within about a second instead of
    running on for nothing (its heartbeat finds no current attempt)."""
    experiment_id = exp.id
    if exp.status not in TERMINAL:
        try:
            store.request_cancel(experiment_id)
        except IllegalTransition:  # it finished in between: nothing left to stop
            log.info("experiment %s finished while being deleted", experiment_id)
    store.delete_experiment(experiment_id)


# --------------------------------------------------------------------------- queries


def list_page(store: Store, *, status: Sequence[str], tag: str | None, name: str | None,
              spec_fields: dict[str, str], limit: int, cursor: str | None,
              order: Literal["created_desc", "created_asc"],
              owner: str | None = None) -> ExperimentPage:
    for path in spec_fields:
        if not spec_path_exists(path.split(".")):
            raise FieldError(["query", f"spec.{path}"], f"spec.{path}: no such spec field",
                             "unknown_spec_field")
    flt = ExperimentFilter(status=tuple(status), tag=tag, name_contains=name,
                           spec_fields=dict(spec_fields), owner=owner)
    try:
        page = store.list_experiments(flt, limit=limit, cursor=cursor, order=order)
    except ValueError as exc:  # the store's only ValueError here: a cursor it did not issue
        raise FieldError(["query", "cursor"], f"cursor: {exc}", "invalid_cursor") from None
    return ExperimentPage(items=[to_read(e) for e in page.items], next_cursor=page.next_cursor)


def split_names(names: Sequence[str]) -> list[str] | None:
    """`?names=a,b&names=c` → ["a", "b", "c"]; nothing → None (all series)."""
    out = [n.strip() for raw in names for n in raw.split(",") if n.strip()]
    return out or None


def _series(points_by_name: dict[str, list[MetricPoint]]) -> list[Series]:
    """Store series (sorted by seed, then step) → one Series per (name, seed)."""
    out: list[Series] = []
    for name in sorted(points_by_name):
        for seed, group in groupby(points_by_name[name], key=attrgetter("seed")):
            # built from the store's typed points: skip re-validating up to 10^5 tuples
            out.append(Series.model_construct(name=name, seed=seed,
                                              points=[(p.step, p.value) for p in group]))
    return out


def read_metrics(store: Store, exp: Experiment, *, names: list[str] | None,
                 since_step: int | None, max_points: int | None,
                 seed: int | None) -> MetricsRead:
    """The series of a loaded experiment (the route's dependency answered 404 for unknown ids)."""
    experiment_id = exp.id
    points = store.get_metrics(experiment_id, names=names, since_step=since_step,
                               max_points=max_points, seed=seed)
    return MetricsRead(experiment_id=experiment_id, series=_series(points))


def read_correlations(store: Store, exp: Experiment, *, since_step: int | None,
                      max_points: int | None, seed: int | None) -> CorrelationsRead:
    """All `corr/*` trajectories plus the names and steps of the stored matrices."""
    experiment_id = exp.id
    names = [n for n in store.metric_names(experiment_id) if n.startswith("corr/")]
    points = (store.get_metrics(experiment_id, names=names, since_step=since_step,
                                max_points=max_points, seed=seed) if names else {})
    return CorrelationsRead(experiment_id=experiment_id, series=_series(points),
                            matrices=store.matrix_steps(experiment_id))


def read_matrix(store: Store, exp: Experiment, *, name: str | None, step: int | None,
                seed: int | None) -> MatrixRead:
    """One full matrix; `name` may be left out when the experiment records only one kind;
    `step` defaults to the latest. NotFound (404) when there is no such matrix."""
    experiment_id = exp.id
    if name is None:
        available = sorted(store.matrix_steps(experiment_id))
        if len(available) != 1:
            raise NotFound(f"experiment {experiment_id} has no single correlation matrix kind; "
                           f"pass name= one of {available}" if available else
                           f"experiment {experiment_id} has no correlation matrices")
        name = available[0]
    matrix = store.get_matrix(experiment_id, name, step=step, seed=seed)
    if matrix is None:
        at = f" at step {step}" if step is not None else ""
        for_seed = f" for seed {seed}" if seed is not None else ""
        raise NotFound(f"experiment {experiment_id} has no matrix {name!r}{at}{for_seed}")
    values = [list(map(float, row)) for row in matrix.values]
    return MatrixRead(experiment_id=experiment_id, name=matrix.name, step=matrix.step,
                      seed=matrix.seed, rows=len(values), cols=len(values[0]) if values else 0,
                      values=values, row_labels=list(matrix.row_labels),
                      col_labels=list(matrix.col_labels))
