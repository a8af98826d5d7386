"""Real results for the plot / export / compare tests: the real app on a migrated SQLite store,
experiments submitted over HTTP and run to completion in-process by the worker's own job
function (`worker.tasks.execute`: real advcore training writing through the real StoreObserver;
no Celery, nothing mocked). Tiny specs: each run takes well under a second."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from client.overrides import set_path
from devtools.measured import single_thread
from lab.config import Settings


def cluster_spec(**changes: Any) -> dict[str, Any]:
    """Feature averaging, d=20 k=4, 8 neurons, 6 epochs, one PGD and the fixed direction."""
    body: dict[str, Any] = {
        "name": "results tiny", "tags": ["results"], "seed": 0, "device": "cpu",
        "data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 80, "n_test": 40},
        "learner": {"kind": "two_layer_relu", "width": 8},
        "training": {"epochs": 6, "optimizer": {"kind": "gd", "lr": 0.5}},
        "evaluation": {"every": 2, "attacks": [
            {"kind": "pgd", "norm": "l2", "radii": [1, 2, 4], "steps": 5},
            {"kind": "feature_direction", "radii": [1, 2, 4]}]},
    }
    for dotted, value in changes.items():
        set_path(body, dotted, value)
    return body


def patch_spec() -> dict[str, Any]:
    """The patch model, k=2, standard training: robust and non-robust correlations."""
    return {"name": "patch tiny", "seed": 0, "device": "cpu",
            "data": {"kind": "patch", "k": 2, "d": 8, "patches": 6, "n_train": 60, "n_test": 30},
            "learner": {"kind": "patch_cnn", "width": 2},
            "training": {"epochs": 4, "optimizer": {"kind": "sgd", "lr": 0.2}, "batch_size": 30},
            "evaluation": {"every": 2, "attacks": [{"kind": "pgd", "norm": "l2", "radii": [0.5],
                                                    "steps": 3}]}}


@dataclass
class Results:
    client: TestClient
    settings: Settings
    ids: dict[str, str] = field(default_factory=dict)  # label → experiment id

    @property
    def store(self):
        return self.client.app.state.store

    def submit(self, label: str, spec: dict[str, Any], *, run: bool = True) -> str:
        from worker.tasks import execute

        response = self.client.post("/v1/experiments", json=spec)
        assert response.status_code == 202, response.text
        experiment_id = response.json()["id"]
        if run:
            status = execute(experiment_id, self.store, self.settings, worker_name="test")
            assert status == "succeeded", self.client.get(f"/v1/experiments/{experiment_id}").json()
        self.ids[label] = experiment_id
        return experiment_id


def open_results(root: Path):
    """Context manager-ish generator: yields a Results on a fresh migrated SQLite database."""
    from service.main import create_app
    from lab.store.migrate import upgrade

    home = root / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'advlab.db'}",
                        broker_url="filesystem://", device="cpu")
    upgrade("head", settings.resolved_database_url)
    with TestClient(create_app(settings)) as client, single_thread():
        yield Results(client=client, settings=settings)

