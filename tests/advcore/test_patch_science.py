"""The patch model's claims (science.md §B), reproduced through advcore.run.run_experiment with
the data, learner and training of examples/patch_standard.json and patch_adversarial.json.

Why these parameters (k=4, d=64, P=48 patches, one robust patch, alpha=1, beta=0.4,
sigma_n=0.02, q=3, rho=0.1, init 0.1, m=8, SGD lr 0.05, batch 100, l_inf threat eps=0.08;
adversarial training: filters in the l1 ball of radius 0.5, SGD lr 0.2):
- The threat model decides whether the claim can show. Under a global l2 budget the two
  conditions conflict (science.md calibration notes): standard training prefers v only if
  n*beta^q > alpha^q (the small-weight race of sReLU's polynomial piece), while an attacker that
  flips v but not u needs n*beta^2 < alpha^2; for beta < alpha and q >= 2 both cannot hold.
- An l_inf threat with a SPARSE robust feature (u_y = e_y, `features: sparse_robust`) and DENSE
  non-robust ones breaks that tie: per patch the attacker moves along v by eps*||v||_1
  (~ 0.8*sqrt(d-k) ~ 6.2 here) but along u only by eps. So:
    race       n*beta^3 = 47 * 0.064 = 3.0 > alpha^3 = 1      -> standard training learns v;
    v flip     eps*||v||_1 ~ 0.5 > beta = 0.4                  -> adversarial examples cancel v;
    u safe     eps = 0.08 << alpha/2, and spreading e_j over all P patches stays in sReLU's
               polynomial piece (P*(c*eps)^3/(3 rho^2) < c*alpha while the learned c <~ 1).
               Cross-entropy keeps growing c, so robust accuracy drifts down late in
               training (seed 0: ~97% at epoch 30, 75% at epoch 60, class 2 reaching c=1.29).
- P=48 (not 128) keeps that spreading attack weak; rho=0.1 keeps the initial correlations
  (~0.03) deep in the polynomial piece so the race, not the initialisation, decides.
- Robust accuracy at eps = 0.08 is NOT what margin-PGD reports unless the filters are bounded.
  The attacker can add eps*||w_{j,r}||_1 to EVERY patch for another class j: sum_r
  P * sReLU(eps*||w_{j,r}||_1) against the own class's single robust patch. For the sparse
  robust model w_{j,r} = c e_j that is a cliff at c*eps ~ rho (c < 1 here); cross-entropy
  drives c past it, and trained filters keep v and dense residual components that the l_inf
  attacker reads with leverage ~eps*sqrt(d), so the cliff comes earlier. PGD misses this spread
  attack (sReLU's gradient ~ z^2 / rho^2 vanishes on the patches it must spread onto); APGD-T
  finds it: 0.00 / 0.04 / 0.12 on seeds 3 / 4 / 5 where PGD reported 0.84 / 0.93 / 0.965.
- The fix is the dual norm: the example projects every filter onto the l1 ball of radius
  R = 0.5 after each step (learner.max_filter_l1), so eps*||w||_1 <= 0.04 = 0.4 rho and the
  spread gains at most m*P*sReLU(0.04) = 8*48*0.0021 = 0.82 while the own class keeps ~
  sum_r sReLU(0.92*<w_{y,r}, u_y>) (filters spend the budget on u: u ~ 0.47 of 0.5). The init
  (||w||_1 ~ 0.1*sqrt(2d/pi) ~ 0.64) starts outside the ball, which lengthens the
  u plateau; lr 0.2 (0.05 without the ball) and 120 epochs let every class switch u on.
  Tuned on seeds 0, 1, 2 only (benchmarks/patch_reliability.py --set-adv ...): weight decay 0.15 stalls u for whole classes (clean 0.28); R = 0.8 (eps*R/rho =
  0.64) leaves autoattack 0.35-0.60; R = 0.65, lr 0.1: 0.50-0.75; R = 0.5, lr 0.05 / 0.1: one or
  two classes never switch u on; R = 0.5, lr 0.2: autoattack 0.99 / 0.93 / 0.93. The
  unconstrained setting (lr 0.05) stays in the tests as the failure mode PGD hides.
  Fresh seeds 10-14 (100 points; autoattack / torchattacks APGD-T): 0.72 / 0.74, 1.00 / 1.00,
  0.48 / 0.55, 1.00 / 1.00, 0.98 / 0.98 (unconstrained: 0.16, 0.00, 0.00, 0.00, 0.03). On
  seeds 10 and 12 one / two classes never switch u on within 60 epochs (the same classes stall
  without the ball): those classes are read through v and broken, every class that learns u
  is robust. So the example trains 120 epochs; fresh seeds 15-19 (never run before) then give
  1.00 under PGD, APGD-CE, APGD-T, autoattack and torchattacks' APGD-T on every seed, with u
  growth >= 0.46 and v <= 0.11 for every class.
Correlations are max_r <w_{i,r}, f_i> (unit features); "growth" is final minus initial.
Standard training runs 60 epochs, adversarial training 120 (SGD, same data and learner;
adversarial training adds the l1 ball and lr 0.2); adversarial training with a 5-step PGD inner max: u-learning of a class switches
on abruptly after a plateau whose length ~ 1/(initial correlation) (sReLU's z^3 piece), so
with 30 epochs one class of seed 1 had not switched on yet.
Measured at the time of writing (seeds 0 / 1, CPU):
  standard:    v/u growth per class 5.5 5.1 29.8 17.2 / 181 23 170 12; clean 100% / 100%;
               l_inf margin-PGD at 0.08: 0% / 0%; NR-subspace l2 PGD at 2: 24% / 16%, at 3: 0%;
               robust-subspace l2 PGD at 1: 100% / 100% (it does not touch what the model uses).
  adversarial without the l1 ball (lr 0.05):
               u 0.85 0.86 1.29 0.71 / 0.93 0.68 0.68 0.91 vs v 0.08 0.21 0.34 0.24 /
               0.19 0.13 0.24 0.08; clean 100%; l_inf margin-PGD at 0.08: 75% / 95%;
               NR-subspace l2 PGD at 2: 77% / 61%; robust-subspace l2 PGD at 1: 13% / 13%.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advcore.attacks import robust_accuracy
from advcore.data import build_data, stack_seeds
from advcore.evaluate import Evaluator
from advcore.learners import build_learner
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import AttackSpec, parse_spec
from advcore.train import make_task, train
from devtools.patch_oracle import seed_model, torchattacks_apgdt

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEEDS = [0, 1]
EPS = 0.08  # the adversary's l_inf radius in patch_adversarial.json
N_ROBUST_POINTS = 200  # test points of the untuned-seed robustness check


def _body(example: str, learner: dict | None = None, lr: float | None = None,
          epochs: int | None = None) -> dict:
    body = json.loads((EXAMPLES / example).read_text())
    body["learner"].update(learner or {})
    if lr is not None:
        body["training"]["optimizer"]["lr"] = lr
    if epochs is not None:
        body["training"]["epochs"] = epochs
    return body


def _run(example: str, learner: dict | None = None, lr: float | None = None,
         epochs: int | None = None):
    """The example spec with two batched seeds and one evaluation (at the end), to keep the
    test inside its CI budget; training is exactly the example's (but for the overrides)."""
    body = _body(example, learner, lr, epochs)
    body["seeds"] = SEEDS
    body["evaluation"]["every"] = body["training"]["epochs"]
    spec = parse_spec(body)
    observer = CollectingObserver()
    summary = run_experiment(spec, observer, device="cpu").to_stored()
    return spec, observer, summary


@pytest.fixture(scope="module")
def standard():
    return _run("patch_standard.json")


@pytest.fixture(scope="module")
def adversarial():
    return _run("patch_adversarial.json")


@pytest.fixture(scope="module")
def unconstrained():
    """The example's adversarial training without the filter l1 ball, at the lr and length it
    was calibrated with before (0.05, 60 epochs): the failure mode."""
    return _run("patch_adversarial.json", {"max_filter_l1": None}, lr=0.05, epochs=60)


def _value(observer, name: str, step: int, seed: int) -> float:
    (value,) = [r.value for r in observer.metrics if r.name == name and r.step == step and r.seed == seed]
    return value


def _corr(run, kind: str, seed: int, cls: int, step: int | None = None) -> float:
    spec, observer, _ = run
    return _value(observer, f"corr/{kind}/{cls}", spec.training.epochs if step is None else step, seed)


def _growth(run, kind: str, seed: int, cls: int) -> float:
    return _corr(run, kind, seed, cls) - _corr(run, kind, seed, cls, step=0)


def _final(run, name: str, seed: int) -> float:
    spec, observer, _ = run
    return _value(observer, name, spec.training.epochs, seed)


@pytest.mark.slow
def test_standard_training_grows_non_robust_correlation_3x_faster_than_robust_for_every_class(standard):
    spec, _, _ = standard
    for seed in SEEDS:
        for cls in range(spec.data.k):
            grow_v, grow_u = _growth(standard, "non_robust", seed, cls), _growth(standard, "robust", seed, cls)
            assert grow_v > 0.4, (seed, cls, grow_v)
            assert grow_v >= 3 * max(grow_u, 0.0), (seed, cls, grow_v, grow_u)
            assert _corr(standard, "non_robust", seed, cls) > _corr(standard, "robust", seed, cls)


@pytest.mark.slow
def test_standard_training_is_accurate_but_broken_by_linf_pgd_and_non_robust_subspace_attack(standard):
    for seed in SEEDS:
        assert _final(standard, "test/clean_accuracy", seed) >= 0.95
        assert _final(standard, f"test/robust_accuracy/pgd_linf@{EPS:g}", seed) <= 0.10
        assert _final(standard, "test/robust_accuracy/pgd_l2_non_robust@3", seed) <= 0.10
        # the robust-subspace attack at a radius that breaks the adversarial model does not
        assert _final(standard, "test/robust_accuracy/pgd_l2_robust@1", seed) >= 0.9


@pytest.mark.slow
def test_non_robust_subspace_attack_hurts_the_standard_model_far_more_than_the_adversarial_one(
        standard, adversarial):
    name = "test/robust_accuracy/pgd_l2_non_robust@2"
    for seed in SEEDS:
        assert _final(adversarial, name, seed) >= _final(standard, name, seed) + 0.3


@pytest.mark.slow
def test_adversarial_training_makes_robust_correlation_the_larger_for_every_class(adversarial):
    spec, _, _ = adversarial
    for seed in SEEDS:
        for cls in range(spec.data.k):
            u, v = _corr(adversarial, "robust", seed, cls), _corr(adversarial, "non_robust", seed, cls)
            assert u > 0.4 and u > 2 * v, (seed, cls, u, v)


@pytest.mark.slow
def test_pgd_overstates_the_unconstrained_adversarially_trained_model_and_the_summary_says_so(
        unconstrained):
    """Adversarial training against 5-step PGD fits PGD: PGD at the training radius reports the
    model robust, while the reliable default that resolve() adds after adversarial training
    (autoattack at the training norm and radius) finds the spread attack over the P patches
    (module docstring). The robust accuracy against every attack is far lower, and the summary
    flags the disagreement instead of letting PGD's number stand."""
    adversarial = unconstrained
    spec, _, summary = adversarial
    assert spec.learner.max_filter_l1 is None and spec.training.optimizer.lr == 0.05
    assert spec.training.adversary.radii == [EPS]
    added = [a for a in spec.resolve().evaluation.attacks if a.kind == "autoattack"]
    assert [(a.norm, a.radii, a.added) for a in added] == [("linf", [EPS], "reliable_default")]
    for index, seed in enumerate(SEEDS):
        assert _final(adversarial, "test/clean_accuracy", seed) >= 0.95
        pgd = _final(adversarial, f"test/robust_accuracy/pgd_linf@{EPS:g}", seed)
        worst = _final(adversarial, f"test/robust_accuracy/min_linf@{EPS:g}", seed)
        assert pgd >= 0.5, (seed, pgd)  # what a PGD-only evaluation would have reported
        assert worst <= min(0.35, pgd - 0.3), (seed, pgd, worst)
        flagged = [d for d in summary["seeds"][index].get("disagreements", [])
                   if d["threat"] == "min_linf" and abs(d["radius"] - EPS) < 1e-9]
        assert flagged and flagged[0]["suspicious"] and "pgd_linf" in flagged[0]["above"], flagged


# the l1-ball setting was tuned on seeds 0, 1, 2; 120 epochs were chosen from seeds 10-14's
# stalled classes; seed 15 was first run with the final setting
UNSEEN_SEED = 15


@pytest.mark.slow
def test_l1_ball_adversarial_training_is_robust_under_every_attack_on_an_untuned_seed():
    """The example (every filter in the l1 ball of radius max_filter_l1, so the spread attack
    moves each filter's pre-activation on each patch by at most eps * max_filter_l1 < rho) is
    robust at the training radius on a seed it was not tuned on: under advcore's PGD, APGD-CE,
    APGD-T and autoattack (their minimum) AND under torchattacks' APGD-T on the same points;
    advcore's autoattack is not weaker than the independent APGD-T. The flip shows too."""
    pytest.importorskip("torchattacks")
    body = _body("patch_adversarial.json")
    body["seeds"] = [UNSEEN_SEED]
    body["evaluation"]["attacks"], body["evaluation"]["every"] = [], body["training"]["epochs"]
    spec = parse_spec(body)
    assert spec.learner.max_filter_l1 * EPS < spec.learner.rho
    data = stack_seeds([build_data(spec.data, UNSEEN_SEED, torch.device("cpu"))])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, [UNSEEN_SEED], torch.device("cpu"))
    observer = CollectingObserver()
    train(spec, model, data, task, observer, Evaluator(spec, model, data, task, observer))
    for cls in range(spec.data.k):  # the flip: u over v for every class
        u, v = (_value(observer, f"corr/{kind}/{cls}", spec.training.epochs, UNSEEN_SEED)
                for kind in ("robust", "non_robust"))
        assert u > 0.3 and u > 2 * v, (cls, u, v)
    x, y = data.x_test[:, :N_ROBUST_POINTS], data.y_test[:, :N_ROBUST_POINTS]
    k = spec.data.k
    attacks = [AttackSpec(kind="pgd", norm="linf", radii=[EPS], steps=20, loss="margin"),
               AttackSpec(kind="apgd", norm="linf", radii=[EPS]),
               AttackSpec(kind="apgd", norm="linf", radii=[EPS], targeted=True,
                          n_target_classes=k - 1),
               AttackSpec(kind="autoattack", norm="linf", radii=[EPS], n_target_classes=k - 1)]
    acc = [float(robust_accuracy(model, x, y, a, feature_ndim=2,
                                 generator=[torch.Generator().manual_seed(i)]).accuracy[0][0])
           for i, a in enumerate(attacks)]
    with torch.no_grad():
        assert float((model(x).argmax(-1) == y).float().mean()) >= 0.95
    external = torchattacks_apgdt(seed_model(model, 0), x[0], y[0], EPS, k, UNSEEN_SEED)
    assert min(acc) >= 0.5 and external >= 0.5, (acc, external)
    assert acc[3] <= external + 0.02, (acc, external)
