"""PGD's early exit in evaluation: examples leave the batch once broken, and the robust accuracy
is exactly that of running every example to the last step (same seed), on the linear oracle and
on trained nets; the work saved is counted in forwarded rows, not timed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcore.attacks import robust_accuracy
from advcore.spec import AttackSpec

from tests.advcore.test_attacks import linear_model, linear_problem, oracle_accuracy


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Counting:
    """A model wrapper counting the example rows it is asked to forward."""

    def __init__(self, model, example_dims: int):
        self.model, self.example_dims, self.rows = model, example_dims, 0

    def __call__(self, x):
        self.rows += x.shape[:x.dim() - self.example_dims].numel()
        return self.model(x)


def both(model, x, y, spec, feature_ndim, seed, generator_of=gen):
    """(early exit result, full result, rows forwarded by each) with the same generator seed."""
    out = []
    for early in (True, False):
        counted = Counting(model, feature_ndim)
        res = robust_accuracy(counted, x, y, spec, feature_ndim=feature_ndim,
                              generator=generator_of(seed), early_exit=early)
        out += [res, counted.rows]
    return out


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_early_exit_equals_the_full_attack_on_the_linear_oracle(norm):
    x, y, w, b = linear_problem(31, n=300, d=20, s=2)  # two seeds batched: (2, 300, 20)
    radii = [0.0, 0.5, 1.0, 2.0] if norm == "l2" else [0.0, 0.15, 0.3, 0.6]
    spec = AttackSpec(kind="pgd", norm=norm, radii=radii, steps=20, restarts=2)
    early, rows_early, full, rows_full = both(
        linear_model(w, b), x, y, spec, 1, 32, lambda s: [gen(s), gen(s + 1)])
    assert torch.equal(early.accuracy, full.accuracy)
    oracle = oracle_accuracy(x, y, w, b, radii, norm)  # (R, S)
    # random starts with 20 'auto' steps miss a few boundary points (in both runs alike);
    # test_attacks.py holds PGD itself to one point with larger steps
    assert (early.accuracy - oracle).abs().max() <= 0.02
    assert oracle[-1].max() < 0.5 * oracle[0].min()  # the radii span a real drop
    robust = full.margins > 0
    assert torch.allclose(early.margins[robust], full.margins[robust], atol=1e-5)
    assert (early.margins[~robust] <= 0).all()
    assert rows_early < 0.8 * rows_full  # 37% of the points break: they stopped early


def _trained_mlp(binary: bool, seed: int = 41, d: int = 20, n: int = 400):
    """A small ReLU net trained (Adam, 200 steps) on Gaussian clusters: binary (one logit, labels
    +-1) or 10 classes. Returns (model, x_test, y_test)."""
    g = gen(seed)
    classes = 2 if binary else 10
    means = 2.0 * torch.randn(classes, d, generator=g)
    labels = torch.arange(2 * n) % classes
    x = means[labels] + torch.randn(2 * n, d, generator=g)
    torch.manual_seed(seed)
    out = 1 if binary else classes
    net = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, out))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    y = (2.0 * labels - 1) if binary else labels
    for _ in range(200):
        opt.zero_grad()
        logits = net(x[:n])
        loss = nn.functional.softplus(-y[:n] * logits.squeeze(-1)).mean() if binary else \
            nn.functional.cross_entropy(logits, y[:n])
        loss.backward()
        opt.step()
    for p in net.parameters():
        p.requires_grad_(False)
    model = (lambda z: net(z).squeeze(-1)) if binary else net
    return model, x[n:], y[n:]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "10-class"])
def test_early_exit_equals_the_full_attack_on_a_trained_net(binary):
    model, x, y = _trained_mlp(binary)
    radii = [3.0, 4.0, 6.0]
    spec = AttackSpec(kind="pgd", norm="l2", radii=radii, steps=20, restarts=2)
    early, rows_early, full, rows_full = both(model, x, y, spec, 1, 43)
    assert torch.equal(early.accuracy, full.accuracy)
    assert rows_early < 0.9 * rows_full
    assert early.accuracy[0] > 0.5 and early.accuracy[-1] < 0.5 * early.accuracy[0]
    # an independent strong attack (advcore's autoattack, checked against torchattacks'
    # AutoAttack in test_autoattack_oracle.py) finds a few more points than PGD-20 (measured:
    # 4.75 points binary at radius 6, 7 points 10-class at radius 4), never fewer
    auto = robust_accuracy(model, x, y, AttackSpec(kind="autoattack", norm="l2", radii=radii,
                                                   steps=50), feature_ndim=1, generator=gen(44))
    assert (auto.accuracy <= early.accuracy + 1e-6).all()
    assert (early.accuracy - auto.accuracy).max() <= 0.08


def test_fgsm_early_exit_equals_the_full_attack():
    model, x, y = _trained_mlp(False)
    spec = AttackSpec(kind="fgsm", norm="linf", radii=[0.5, 1.0])
    early, _, full, _ = both(model, x, y, spec, 1, 45)
    assert torch.equal(early.accuracy, full.accuracy)
    assert 0 < early.accuracy[-1] < early.accuracy[0] < 1


@pytest.mark.parametrize("early", [True, False])
def test_cache_sized_parts_change_nothing(monkeypatch, early):
    """Batched seeds on a CPU are attacked in parts of the example dim: with parts of a few
    examples the accuracies and margins are those of one whole batch (random starts drawn once
    for all)."""
    import advcore.attacks.pgd as pgd

    x, y, w, b = linear_problem(41, n=200, d=20, s=3)
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0, 0.5, 1.0], steps=10, restarts=2)
    model = linear_model(w, b)
    whole = robust_accuracy(model, x, y, spec, feature_ndim=1, early_exit=early,
                            generator=[gen(1), gen(2), gen(3)])
    monkeypatch.setattr(pgd, "CACHE_ELEMENTS", 3 * 20 * 7)  # parts of 7 examples
    parts = robust_accuracy(model, x, y, spec, feature_ndim=1, early_exit=early,
                            generator=[gen(1), gen(2), gen(3)])
    assert torch.equal(parts.accuracy, whole.accuracy)
    assert torch.allclose(parts.margins, whole.margins, atol=1e-5)
    assert 0.0 < float(whole.accuracy[-1].mean()) < float(whole.accuracy[0].mean())
