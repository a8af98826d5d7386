"""Fixtures and helpers for the API tests: the real app on a real, Alembic-migrated store, with
the real Celery enqueue writing to a filesystem broker in tmp_path that no worker consumes — so
a test can read back exactly which messages landed. The fixtures built on them (make_api,
make_module_api, migrated_sqlite) are in tests/conftest.py."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from client.overrides import set_path
from lab.config import Settings
from service.main import create_app
from lab.store.base import Store

SMALL_SPEC: dict[str, Any] = {
    "name": "feature-averaging tiny",
    "tags": ["feature-averaging", "tiny"],
    "seed": 3,
    "data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 64, "n_test": 32},
    "learner": {"kind": "two_layer_relu", "width": 8},
    "training": {"epochs": 5, "optimizer": {"kind": "gd", "lr": 0.1}},
    "evaluation": {"every": 1, "attacks": [{"kind": "pgd", "radii": [1, 2]}]},
}


def spec(**changes: Any) -> dict[str, Any]:
    """SMALL_SPEC with dotted-path changes: spec(**{"data.d": 30})."""
    body = json.loads(json.dumps(SMALL_SPEC))
    for dotted, value in changes.items():
        set_path(body, dotted, value)
    return body


@dataclass
class Api:
    client: TestClient
    settings: Settings
    enqueue_log: list[tuple[str, bool]]  # (id, row committed when enqueue was called)

    @property
    def store(self) -> Store:
        return self.client.app.state.store

    def messages(self) -> list[tuple[str, str]]:
        return queued_messages(self.settings)

    def rows(self) -> int:
        return sum(self.store.counts_by_status().values())


def queued_messages(settings: Settings) -> list[tuple[str, str]]:
    """(task name, experiment id) of every message waiting in the filesystem broker queue."""
    folder = settings.broker_dir / "queue"
    out = []
    for path in sorted(folder.glob("*.msg")) if folder.is_dir() else []:
        payload = json.loads(path.read_text())
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        args, _kwargs, _embed = json.loads(body)
        out.append((payload["headers"]["task"], args[0]))
    return out


def make_settings(home: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    overrides.setdefault("broker_url", "filesystem://")
    return Settings(home=home, database_url=database_url or f"sqlite:///{home / 'advlab.db'}",
                    **overrides)


class ApiFactory:
    """Builds Api objects under `root` and closes them all in `close()`."""

    def __init__(self, root: Path, migrated_sqlite: Path) -> None:
        self.root, self.migrated_sqlite = root, migrated_sqlite
        self.clients: list[TestClient] = []
        self.stores: list[Store] = []

    def __call__(self, database_url: str | None = None, **overrides: Any) -> Api:
        from lab.store import open_store
        from lab.store.migrate import upgrade

        home = self.root / f"home-{uuid.uuid4().hex[:6]}"
        home.mkdir()
        settings = make_settings(home, database_url, **overrides)
        if database_url is None:
            for suffix in ("", "-wal", "-shm"):
                source = self.migrated_sqlite.with_name(self.migrated_sqlite.name + suffix)
                if source.exists():
                    shutil.copyfile(source, home / f"advlab.db{suffix}")
        else:
            upgrade("head", settings.resolved_database_url)
        app = create_app(settings)
        enqueue_log: list[tuple[str, bool]] = []
        real_enqueue = app.state.enqueue
        observer_store = open_store(settings.resolved_database_url)
        self.stores.append(observer_store)

        def enqueue_after_commit_check(experiment_id: str, queue: str | None = None) -> None:
            # a separate connection sees the row only if it was committed
            try:
                observer_store.get_experiment(experiment_id)
                committed = True
            except Exception:
                committed = False
            enqueue_log.append((experiment_id, committed))
            real_enqueue(experiment_id, queue)

        app.state.enqueue = enqueue_after_commit_check
        client = TestClient(app)
        client.__enter__()
        self.clients.append(client)
        return Api(client=client, settings=settings, enqueue_log=enqueue_log)

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)
        for store in self.stores:
            store.close()


def run_fake_worker(store: Store, experiment_id: str, *, steps: int = 5, seeds=(3,),
                    finish: str | None = "succeeded") -> None:
    """Play the worker's side of the store contract with hand-made records (no training):
    every step has a loss, accuracies and two corr/cluster series; matrices at steps 0 and last."""
    from lab.store.base import CorrelationMatrix, MetricPoint

    exp = store.start_attempt(experiment_id, "test-worker")
    assert exp is not None
    points = []
    for seed in seeds:
        for step in range(steps + 1):
            points += [MetricPoint("train/loss", step, 1.0 / (1 + step) + seed, seed),
                       MetricPoint("test/clean_accuracy", step, 0.5 + 0.1 * step, seed),
                       MetricPoint("corr/cluster/0", step, 0.1 * step, seed),
                       MetricPoint("corr/cluster/1", step, 0.05 * step, seed)]
    store.add_metrics(experiment_id, exp.attempts, points)
    matrices = [CorrelationMatrix("cosine/cluster", step, seed,
                                  [[0.1 * step, 0.2], [0.3, 0.4 + seed], [0.5, 0.6]],
                                  ["+0", "+1", "-0"], ["mu_0", "mu_1"])
                for seed in seeds for step in (0, steps)]
    store.add_matrices(experiment_id, exp.attempts, matrices)
    store.heartbeat(experiment_id, exp.attempts, steps)
    if finish is not None:
        summary = {"clean_accuracy": {"train": 1.0, "test": 0.9}} if finish == "succeeded" else None
        store.finish(experiment_id, exp.attempts, finish, summary=summary,
                     error="boom" if finish == "failed" else None)
