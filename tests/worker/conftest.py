"""A real migrated SQLite store and filesystem broker under tmp_path, and a job factory."""

from __future__ import annotations

import pytest

from advcore.spec import parse_spec
from lab.config import Settings
from lab.store import open_store
from lab.store.migrate import upgrade


def small_spec(**training) -> dict:
    return {"name": "worker test", "seed": 0, "device": "cpu",
            "data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 100, "n_test": 100},
            "learner": {"kind": "two_layer_relu", "width": 8},
            "training": {"epochs": 12, "optimizer": {"kind": "gd", "lr": 1.0}, **training},
            "evaluation": {"every": 4, "record": ["correlations", "weight_norms"]}}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", broker_url=None, database_url=None, device="cpu",
                    queue="advlab-test", heartbeat_s=0.0, stale_after_s=60.0, reap_every_s=1.0,
                    lost_queued_after_s=0.0, max_attempts=3, metric_batch=7)


@pytest.fixture
def store(settings):
    upgrade("head", url=settings.resolved_database_url)
    return open_store(settings.resolved_database_url)


@pytest.fixture
def make_job(store):
    def make(spec: dict | None = None, *, raw: bool = False):
        spec = spec or small_spec()
        # raw: stored as given, a spec that no longer validates (stored before a schema change)
        if raw:
            resolved, spec_hash, total = spec, "0" * 64, 10
        else:
            parsed = parse_spec(spec).resolve()
            resolved = parsed.model_dump(mode="json")
            spec_hash, total = parsed.spec_hash(), parsed.total_steps
        experiment, created = store.create_experiment(
            name=resolved.get("name", "bad"), tags=[], spec=resolved, spec_hash=spec_hash,
            total_steps=total)
        assert created
        return experiment
    return make
