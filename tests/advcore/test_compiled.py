"""The opt-in compiled path (ADVLAB_COMPILE=1, advcore.compiled) computes what eager PyTorch does.

torch.compile (inductor, C++ codegen on the CPU) takes tens of seconds to build, so this is a
slow test; benchmarks/compile_bench.py reports whether it pays.
"""

from __future__ import annotations

import pytest
import torch

from advcore.learners import build_learner
from advcore.run import run_experiment
from advcore.spec import parse_spec

pytestmark = pytest.mark.slow

SPEC = {
    "seeds": [0, 1],
    "data": {"kind": "multi_cluster", "d": 40, "k": 4, "n_train": 200, "n_test": 100},
    "learner": {"kind": "two_layer_relu", "width": 4},
    "training": {"epochs": 20, "optimizer": {"kind": "gd", "lr": 0.2}},
    "evaluation": {"every": 20, "attacks": [
        {"kind": "pgd", "norm": "l2", "radii": [0.5, 1.0, 2.0], "steps": 10}]},
}


def test_compile_flag_compiles_the_learner_forward(monkeypatch):
    spec = parse_spec(SPEC).resolve()
    monkeypatch.setenv("ADVLAB_COMPILE", "1")
    compiled = build_learner(spec, (40,), 1, [0, 1])
    monkeypatch.delenv("ADVLAB_COMPILE")
    eager = build_learner(spec, (40,), 1, [0, 1])
    assert compiled.forward is not eager.forward
    assert hasattr(compiled.forward, "_torchdynamo_orig_callable")  # torch.compile wrapped it
    assert not hasattr(eager.forward, "_torchdynamo_orig_callable")
    x = torch.randn(2, 7, 40)
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-6)


def test_compiled_run_reports_the_eager_numbers(monkeypatch):
    """Training, evaluation and PGD (with early exit shrinking the batch: dynamic shapes) through
    the compiled forward give the eager run's accuracies and final correlations."""
    monkeypatch.delenv("ADVLAB_COMPILE", raising=False)
    eager = run_experiment(parse_spec(SPEC)).metrics()
    monkeypatch.setenv("ADVLAB_COMPILE", "1")
    compiled = run_experiment(parse_spec(SPEC)).metrics()
    assert eager.keys() == compiled.keys()
    robust = [k for k in eager if "robust_accuracy/pgd_l2@" in k]
    assert len(robust) == 3 and 0.0 < eager[robust[0]] <= 1.0
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, abs=0.011), key  # one point of 100
