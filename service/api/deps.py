"""Shared dependencies as named types, so route signatures stay short; an `...Dep` of a row loads
it (404 when unknown), an `Owned...Dep` also checks that the caller may change it (403).

The store, settings, job queue and enqueue function live on `app.state` (set by create_app / its
lifespan),
which is what lets a test or a second app in the same process use another database and broker.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.auth import UserDep, ensure_can_write
from service.experiments import Enqueue
from lab.config import Settings
from lab.queue import JobQueue
from lab.store.base import Experiment, NotFound, Store, Sweep


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_enqueue(request: Request) -> Enqueue:
    return request.app.state.enqueue


def get_jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]

ExperimentId = Annotated[str, Path(description="Experiment id.", min_length=1, max_length=64)]


def existing_experiment(experiment_id: ExperimentId, store: StoreDep) -> Experiment:
    """Load the experiment or answer 404 (store.NotFound → 404 in service.errors)."""
    try:
        return store.get_experiment(experiment_id)
    except NotFound:
        raise NotFound(f"experiment {experiment_id!r} not found") from None


ExperimentDep = Annotated[Experiment, Depends(existing_experiment)]


def owned_experiment(experiment: ExperimentDep, user: UserDep) -> Experiment:
    """The experiment, if the caller may change it (its owner or an admin); else 403."""
    ensure_can_write(user, experiment.owner, f"experiment {experiment.id}")
    return experiment


OwnedExperimentDep = Annotated[Experiment, Depends(owned_experiment)]

SweepId = Annotated[str, Path(description="Sweep id.", min_length=1, max_length=64)]


def existing_sweep(sweep_id: SweepId, store: StoreDep) -> Sweep:
    """Load the sweep or answer 404 (the store's NotFound names the sweep)."""
    return store.get_sweep(sweep_id)


SweepDep = Annotated[Sweep, Depends(existing_sweep)]


def owned_sweep(sweep: SweepDep, user: UserDep) -> Sweep:
    """The sweep, if the caller may change it (its owner or an admin); else 403."""
    ensure_can_write(user, sweep.owner, f"sweep {sweep.id}")
    return sweep


OwnedSweepDep = Annotated[Sweep, Depends(owned_sweep)]
