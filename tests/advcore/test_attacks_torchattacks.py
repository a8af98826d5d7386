"""Cross-check against an independent implementation: torchattacks' PGD (linf) and PGDL2 on
[0,1]-bounded real data (sklearn's bundled 8x8 digits), same model, same settings, CE loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcore.attacks import robust_accuracy
from advcore.spec import AttackSpec
from devtools.fit import fit_frozen

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def digits_model():
    """A small MLP trained for ~1 s on digits; returns (model, x_test (N,1,8,8) in [0,1], y)."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    x_train, y_train, x_test, y_test = x[:1200], y[:1200], x[1200:], y[1200:]
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    fit_frozen(model, x_train, y_train, steps=150, lr=1e-2)
    with torch.no_grad():
        assert (model(x_test).argmax(1) == y_test).float().mean() > 0.9
    return model, x_test, y_test


def _torchattacks_accuracy(model, attack, x, y) -> float:
    x_adv = attack(x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.05, 0.01), ("linf", 0.1, 0.02),
                                            ("l2", 0.5, 0.1), ("l2", 1.0, 0.2)])
def test_pgd_matches_torchattacks_within_one_point(digits_model, norm, eps, alpha):
    model, x, y = digits_model
    steps = 10
    if norm == "linf":
        reference = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    else:
        reference = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps,
                                       random_start=False)
    theirs = _torchattacks_accuracy(model, reference, x, y)
    spec = AttackSpec(kind="pgd", norm=norm, radii=[eps], steps=steps, step_size=alpha,
                      random_start=False, loss="ce", box=[0.0, 1.0])
    ours = robust_accuracy(model, x, y, spec, feature_ndim=3)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert theirs < clean - 0.1  # the radius matters: the comparison is not trivially 100%
    assert abs(float(ours.accuracy[0]) - theirs) <= 0.01
