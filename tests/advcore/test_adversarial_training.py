"""Adversarial training's inner maximisation: PGD with restarts or APGD (CE, or APGD-T over the
top classes), as the spec's `training.adversary`; batched seeds train like separate runs, more
restarts never weaken the adversary, and the estimate prices the adversary's steps, restarts
and targets within 2x of what a run measures."""

from __future__ import annotations

import pytest
import torch

from advcore.attacks import perturb
from advcore.attacks.losses import margin
from advcore.cost import estimate
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import AttackSpec, parse_spec

ADVERSARIES = {
    "pgd_restarts": {"kind": "pgd", "norm": "linf", "radii": [0.08], "steps": 3, "restarts": 2,
                     "loss": "margin"},
    "apgd_ce": {"kind": "apgd", "norm": "linf", "radii": [0.08], "steps": 4},
    "apgd_t": {"kind": "apgd", "norm": "linf", "radii": [0.08], "steps": 4, "targeted": True,
               "n_target_classes": 2},
}


def _patch_spec(seeds, adversary, **evaluation):
    return parse_spec({
        "seeds": seeds,
        "data": {"kind": "patch", "k": 3, "d": 12, "patches": 5, "beta": 0.4, "n_train": 40,
                 "n_test": 20, "features": "sparse_robust"},
        "learner": {"kind": "patch_cnn", "width": 2, "rho": 0.1},
        "training": {"mode": "adversarial", "optimizer": {"kind": "sgd", "lr": 0.05},
                     "epochs": 2, "batch_size": 20, "adversary": adversary},
        "evaluation": {"every": 2, "attacks": [], **evaluation},
    })


@pytest.mark.parametrize("name", list(ADVERSARIES))
def test_batched_seeds_train_like_separate_runs_with_every_inner_maximisation(name):
    both, alone = CollectingObserver(), CollectingObserver()
    run_experiment(_patch_spec([3, 7], ADVERSARIES[name]), both, device="cpu")
    run_experiment(_patch_spec([7], ADVERSARIES[name]), alone, device="cpu")
    batched = {(r.name, r.step): r.value for r in both.metrics if r.seed == 7}
    separate = {(r.name, r.step): r.value for r in alone.metrics}
    assert batched.keys() == separate.keys()
    assert any(k[0] == "test/robust_accuracy/autoattack_linf@0.08" for k in separate)
    for key, value in separate.items():
        assert abs(batched[key] - value) < 1e-4, key


def test_more_pgd_restarts_never_weaken_the_training_adversary():
    """Restart 1 of an R-restart run draws what a 1-restart run draws, and every example keeps
    its worst case: the margins can only go down."""
    torch.manual_seed(0)
    w = torch.randn(3, 10)
    model = lambda x: x @ w.T + 0.3 * torch.sin(5 * x) @ w.T  # noqa: E731  (non-convex)
    x, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    margins = []
    for restarts in (1, 4):
        attack = AttackSpec(kind="pgd", norm="linf", radii=[0.3], steps=3, restarts=restarts)
        x_adv = perturb(model, x, y, attack, 0.3, feature_ndim=1,
                        generator=torch.Generator().manual_seed(1))
        margins.append(margin(model(x_adv), y))
    assert (margins[1] <= margins[0] + 1e-6).all()
    assert (margins[1] < margins[0] - 1e-3).float().mean() > 0.05  # and restarts do find more


def _training_flops(spec) -> float:
    """FLOPs of `train` alone (no evaluation), counted as advcore.cost's tests count them."""
    from advcore.data import build_data, stack_seeds
    from advcore.learners import build_learner
    from advcore.observe import NullObserver
    from advcore.train import make_task, train
    from tests.advcore.measured import CUSTOM_FLOPS, GlobalFlopCounter

    spec = spec.resolve()
    data = stack_seeds([build_data(spec.data, s, torch.device("cpu")) for s in spec.seed_list])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, spec.seed_list, torch.device("cpu"))
    with GlobalFlopCounter(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        train(spec, model, data, task, NullObserver(), lambda epoch: None)
    return float(counter.get_total_flops())


@pytest.mark.parametrize("name", list(ADVERSARIES))
def test_the_adversary_is_priced_within_2x_of_a_measured_training(name):
    """In training every example runs every step of every start (no early exit), so the
    estimate of training + adversary is the measured count, not only a bound."""
    spec = _patch_spec([0, 1], ADVERSARIES[name])
    terms = {t.name: t.value for t in estimate(spec).terms("flops")}
    priced = terms["training"] + terms["training.adversary"]
    measured = _training_flops(spec)
    assert 0.5 <= priced / measured <= 2, (priced, measured)
    assert terms["training.adversary"] > 2 * terms["training"]  # the inner max dominates


def test_the_adversarys_restarts_and_targets_scale_its_price():
    def adversary_flops(**kw):
        spec = _patch_spec([0], {**ADVERSARIES["apgd_ce"], **kw})
        return next(t.value for t in estimate(spec).terms("flops") if t.name == "training.adversary")

    one = adversary_flops()
    assert adversary_flops(restarts=3) == pytest.approx(3 * one)
    # APGD-T over 2 target classes: two runs per example
    assert adversary_flops(targeted=True, n_target_classes=2) == pytest.approx(2 * one)
