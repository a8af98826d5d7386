"""CUDA paths (run by benchmarks/gpu.sh with `-m cuda`): PGD's early exit and batched seeds on
the device agree with the CPU. Skipped without CUDA -- also under CI=true, since no GPU is part
of CI."""

from __future__ import annotations

import pytest
import torch

from advcore.attacks import robust_accuracy
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import AttackSpec, parse_spec

from tests.advcore.test_attacks import linear_model, linear_problem, oracle_accuracy

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_early_exit_on_cuda_equals_the_full_attack_and_the_oracle(norm):
    x, y, w, b = linear_problem(51, n=400, d=30, s=3)
    radii = [0.0, 0.5, 1.0, 2.0] if norm == "l2" else [0.0, 0.15, 0.3, 0.6]
    spec = AttackSpec(kind="pgd", norm=norm, radii=radii, steps=20, step_size=4.0)
    x, y, w = x.cuda(), y.cuda(), w.cuda()
    model = linear_model(w, b)
    gens = lambda: [torch.Generator(device="cuda").manual_seed(s) for s in range(3)]  # noqa: E731
    early = robust_accuracy(model, x, y, spec, feature_ndim=1, generator=gens())
    full = robust_accuracy(model, x, y, spec, feature_ndim=1, generator=gens(), early_exit=False)
    assert torch.equal(early.accuracy, full.accuracy)
    oracle = oracle_accuracy(x, y, w, b, radii, norm)
    assert (early.accuracy - oracle).abs().max() <= 1 / 400 + 1e-6


SPEC = {
    "seeds": [0, 1, 2, 3],
    "data": {"kind": "multi_cluster", "d": 50, "k": 4, "n_train": 200, "n_test": 100},
    "learner": {"kind": "two_layer_relu", "width": 8},
    "training": {"epochs": 20, "optimizer": {"kind": "gd", "lr": 0.2}},
    "evaluation": {"every": 5, "attack_every": [10],
                   "attacks": [{"kind": "pgd", "norm": "l2", "radii": [2.0, 6.0], "steps": 10,
                                "random_start": False}]},
}


def test_a_batched_seed_run_on_cuda_reports_what_the_cpu_reports():
    spec = parse_spec(SPEC)
    on_gpu = run_experiment(spec, CollectingObserver(), device="cuda")
    on_cpu = run_experiment(spec, CollectingObserver(), device="cpu")
    assert on_gpu["device"] == "cuda"
    for g, c in zip(on_gpu["seeds"], on_cpu["seeds"]):
        assert g["clean_accuracy"]["test"] == pytest.approx(c["clean_accuracy"]["test"], abs=0.02)
        for rg, rc in zip(g["robust_accuracy"], c["robust_accuracy"]):
            assert rg["accuracy"] == pytest.approx(rc["accuracy"], abs=0.03)
