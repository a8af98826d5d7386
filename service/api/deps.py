"""Shared dependencies as named types, so route signatures stay short.

The store, settings and enqueue function live on `app.state` (set by create_app / its lifespan),
which is what lets a test or a second app in the same process use another database and broker.
"""

from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, Path, Request

from service.auth import UserDep, ensure_can_write
from lab.config import Settings
from lab.store.base import Experiment, NotFound, Store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_enqueue(request: Request) -> Callable[[str], None]:
    return request.app.state.enqueue


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
EnqueueDep = Annotated[Callable[[str], None], Depends(get_enqueue)]

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


OwnedExperimentDep = Annotated[Experiment, Depends(owned_experiment)]  # engineer J
