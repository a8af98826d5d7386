"""The runner: run_local's three files, the CLI, devices, and cancellation through the observer."""

from __future__ import annotations

import csv
import json

import pytest

from advcore.device import pick_device
from advcore.observe import Canceled, CollectingObserver
from advcore.run import run_experiment, run_local
from advcore.spec import parse_spec
from advcore.summary import RunSummary

SPEC = {
    "name": "runner",
    "seed": 1,
    "data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 80, "n_test": 40},
    "learner": {"kind": "two_layer_relu", "width": 6},
    "training": {"epochs": 5, "optimizer": {"kind": "gd", "lr": 0.2}},
    "evaluation": {"every": 2, "attacks": [{"kind": "pgd", "radii": [0.5, 1], "steps": 5},
                                           {"kind": "feature_direction", "radii": [1]}]},
}


@pytest.fixture()
def spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    return path


def test_run_local_writes_resolved_spec_summary_and_metrics(spec_file, tmp_path):
    out = tmp_path / "out"
    summary = run_local(spec_file, out, device="cpu", progress=False)
    resolved = json.loads((out / "spec.json").read_text())
    assert parse_spec(resolved) == parse_spec(SPEC).resolve()
    assert resolved["data"]["positive_clusters"] == [0, 1]
    stored = json.loads((out / "summary.json").read_text())
    assert RunSummary.from_stored(stored) == summary and stored == summary.to_stored()
    assert summary.device == "cpu" and summary.duration_s > 0
    assert [(r.attack, r.radius) for r in summary.robust_accuracy] == [
        ("pgd_l2", 0.5), ("pgd_l2", 1.0), ("feature_direction", 1.0)]
    # the minimum over attacks per radius, never above an attack's own number
    assert [(m.threat, m.radius, m.attacks) for m in summary.robust_min] == [
        ("min_l2", 0.5, ["pgd_l2"]), ("min_l2", 1.0, ["pgd_l2", "feature_direction"])]
    own = {(r.attack, r.radius): r.accuracy for r in summary.robust_accuracy}
    assert all(m.accuracy <= own[(a, m.radius)] for m in summary.robust_min for a in m.attacks)
    # scalars only: per-cluster correlations, no matrix (that is in matrices.jsonl)
    assert "cosine_matrix" not in stored and len(summary.correlations["cluster"]) == 4
    matrices = [json.loads(line) for line in (out / "matrices.jsonl").read_text().splitlines()]
    last = [m for m in matrices if m["name"] == "cosine/cluster" and m["step"] == 5]
    assert [max(col) for col in zip(*last[0]["values"])] == pytest.approx(
        summary.correlations["cluster"])
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["name", "step", "value", "seed"]
    names = {r["name"] for r in rows}
    assert {"train/loss", "test/loss", "train/clean_accuracy", "test/clean_accuracy",
            "test/robust_accuracy/pgd_l2@0.5", "test/robust_accuracy/pgd_l2@1",
            "test/robust_accuracy/feature_direction@1", "corr/cluster/3",
            "weights/norm_mean"} <= names
    final = [r for r in rows if r["name"] == "test/clean_accuracy" and r["step"] == "5"]
    assert float(final[0]["value"]) == pytest.approx(summary.clean_accuracy.test)
    assert {"test/robust_accuracy/min_l2@0.5", "test/robust_accuracy/min_l2@1"} <= names
    assert {r["seed"] for r in rows} == {"1"}


def test_cli_run_command_writes_the_output_dir(spec_file, tmp_path):
    from typer.testing import CliRunner

    from client.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["run", str(spec_file), "--out", str(out), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {"spec.json", "summary.json", "metrics.csv"}


class StopAfter(CollectingObserver):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def should_stop(self) -> bool:
        return bool(self.progress) and self.progress[-1][0] >= self.epoch


def test_cancellation_stops_within_one_epoch_and_raises_canceled():
    spec = parse_spec({**SPEC, "training": {**SPEC["training"], "epochs": 50}})
    observer = StopAfter(3)
    with pytest.raises(Canceled):
        run_experiment(spec, observer, device="cpu")
    assert observer.progress[-1] == (3, 50)
    assert max(r.step for r in observer.metrics) <= 3


def test_pick_device_honours_request_and_environment(monkeypatch):
    monkeypatch.delenv("ADVLAB_DEVICE", raising=False)
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setenv("ADVLAB_DEVICE", "cpu")
    assert pick_device(None).type == "cpu" and pick_device("auto").type == "cpu"
    with pytest.raises(ValueError):
        pick_device("tpu")


def test_requesting_cuda_without_it_is_an_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        pick_device("cuda")
    monkeypatch.delenv("ADVLAB_DEVICE", raising=False)
    assert pick_device("auto").type == "cpu"


@pytest.mark.parametrize("data,learner,labels", [
    ({"kind": "image", "dataset": "digits", "n_train": 200, "n_test": 100}, {"kind": "cnn", "channels": [4], "hidden": 16}, "fine"),
    ({"kind": "image", "dataset": "digits", "binary": None, "n_train": 200, "n_test": 100}, {"kind": "mlp", "widths": [32]}, "binary"),
    ({"kind": "separated", "d": 10, "n_train": 100, "n_test": 100}, {"kind": "mlp", "widths": [32]}, "binary"),
])
def test_every_data_kind_runs_end_to_end(data, learner, labels):
    spec = parse_spec({"data": data, "learner": learner,
                       "training": {"labels": labels, "epochs": 3, "batch_size": 50,
                                    "optimizer": {"kind": "adam", "lr": 0.01}},
                       "evaluation": {"every": 3, "attacks": [{"kind": "pgd", "norm": "linf", "radii": [0.05], "steps": 3}]}})
    observer = CollectingObserver()
    summary = run_experiment(spec, observer, device="cpu")
    assert summary.clean_accuracy.train > 0.5
    assert len(summary.robust_accuracy) == 1
    assert (summary.fine is not None) == (labels == "fine")
