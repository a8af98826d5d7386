"""Feature-averaging two-layer nets (science.md §A) need more than gradient steps from the clean
point: where every neuron of the attacked sign is switched off the gradient vanishes and PGD
stalls. autoattack also starts from the data model's directions, so its curve must sit within a
point of the best of PGD, APGD and every fixed direction (the data's feature direction, the
class-mean difference, and for a fine-label read-out -mu_own + sum_{opposite} mu_l), on the
binary-trained and on the fine-label-trained net, on a seed the attacks were not tuned on."""

from __future__ import annotations

import pytest
import torch

from advcore.attacks import robust_accuracy
from advcore.attacks.losses import margin
from advcore.data import build_data, stack_seeds
from advcore.learners import build_learner
from advcore.observe import NullObserver
from advcore.spec import AttackSpec, parse_spec
from advcore.train import attack_generator, attack_kwargs, main_view, make_task, train

D, K, SEED, N_ATTACK = 200, 8, 11, 200
RADII = {"binary": [3.0, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0],  # around sqrt(d/k) = 5
         "fine": [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]}  # around sqrt(2d/(k+2)) = 6.3 (sum read-out)


def _trained(labels: str):
    spec = parse_spec({
        "seed": SEED,
        "data": {"kind": "multi_cluster", "d": D, "k": K, "n_train": 400, "n_test": N_ATTACK},
        "learner": {"kind": "two_layer_relu", "width": 10 if labels == "binary" else 5,
                    "init_scale": 0.1},
        "training": {"labels": labels, "epochs": 200, "optimizer": {"kind": "gd", "lr": 0.05}},
    }).resolve()
    data = stack_seeds([build_data(spec.data, SEED)])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, [SEED], "cpu")
    train(spec, model, data, task, NullObserver(), lambda epoch: None)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, data, task


def _attack(model, data, task, **kw):
    spec = AttackSpec(**kw)
    fn, y = main_view(model, task, data.y_test)
    return robust_accuracy(fn, data.x_test, y, spec,
                           generator=attack_generator([SEED], spec.label, "cpu"),
                           **attack_kwargs(spec, data))


def _fixed_margins(model, data, task, direction: torch.Tensor, radii) -> torch.Tensor:
    """(R, 1, N) margins of x - r * u with u the unit direction per example (against y)."""
    fn, y = main_view(model, task, data.y_test)
    unit = direction / direction.norm(dim=-1, keepdim=True)
    return torch.stack([margin(fn(data.x_test + r * unit), y) for r in radii])


def _fixed_directions(data) -> dict[str, torch.Tensor]:
    """The data model's fixed directions per test point, from the true fine labels (independent
    of advcore.attacks.starts, which must infer the own cluster)."""
    means = data.features["cluster"][0]  # (k, d)
    units = means / means.norm(dim=-1, keepdim=True)
    y, fine = data.y_test[0], data.y_test_fine[0]  # (N,), (N,)
    side = -torch.ones(K)
    side[data.positive_classes] = 1.0
    opposite = (side[None, :] != y[:, None]).float()  # (N, k)
    feature = (side[:, None] * units).sum(0)  # sum_{J+} u - sum_{J-} u
    pos, neg = data.x_test[0][y > 0].mean(0), data.x_test[0][y < 0].mean(0)
    return {"feature": (-y[:, None] * feature)[None],
            "class_mean": (-y[:, None] * (pos - neg))[None],
            "opposite_clusters": (opposite @ units - units[fine])[None]}


@pytest.fixture(scope="module", params=["binary", "fine"])
def net(request):
    return request.param, *_trained(request.param)


def test_autoattack_is_within_a_point_of_every_attack_and_fixed_direction(net):
    labels, model, data, task = net
    radii = RADII[labels]
    fn, y = main_view(model, task, data.y_test)
    assert (margin(fn(data.x_test), y) > 0).float().mean() >= 0.99
    auto = _attack(model, data, task, kind="autoattack", norm="l2", radii=radii)
    others = {
        "pgd50": _attack(model, data, task, kind="pgd", norm="l2", radii=radii, steps=50,
                         random_start=False).accuracy,
        "pgd20x5": _attack(model, data, task, kind="pgd", norm="l2", radii=radii, steps=20,
                           restarts=5).accuracy,
        "apgd_ce": _attack(model, data, task, kind="apgd", norm="l2", radii=radii,
                           data_starts=False).accuracy,
        "feature_direction": _attack(model, data, task, kind="feature_direction", norm="l2",
                                     radii=radii).accuracy,
    }
    for name, direction in _fixed_directions(data).items():
        fixed = _fixed_margins(model, data, task, direction, radii)  # (R, 1, N)
        others[name] = (fixed > 0).float().mean(-1)
        # every point a fixed direction breaks, autoattack breaks too (it starts there)
        assert ((auto.margins > 0) <= (fixed > 0)).all(), name
    best = torch.stack(list(others.values())).amin(0)  # (R, 1)
    assert (auto.accuracy <= best + 0.01).all(), (auto.accuracy, others)
    assert auto.accuracy[0] >= 0.8 and auto.accuracy[-1] <= 0.1  # the radii cross the cliff
    assert not auto.flags["suspicious"], auto.flags["reasons"]


def test_the_data_starts_are_what_unstalls_the_gradient_attacks(net):
    labels, model, data, task = net
    radii = RADII[labels]
    auto = _attack(model, data, task, kind="autoattack", norm="l2", radii=radii)
    blind = _attack(model, data, task, kind="autoattack", norm="l2", radii=radii,
                    data_starts=False)
    assert (auto.accuracy <= blind.accuracy).all()
    assert (blind.accuracy - auto.accuracy).max() >= 0.03
