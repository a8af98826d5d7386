"""APGD and the autoattack kind against exact oracles: closed-form worst cases of linear models
(binary: margin > r * ||w||_dual; with a box: the coordinate-wise / water-filling optimum;
k classes: the distance to the nearest class half-space), per seed; feasibility, batching,
the step-size schedule and the spec's bounds."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from advcore.attacks import perturb, robust_accuracy
from advcore.attacks.apgd import apgd_run, checkpoints, dlr_loss, run_apgd
from advcore.attacks.losses import margin
from advcore.attacks.norms import ball_norm
from advcore.attacks.pgd import Threat
from advcore.attacks.subspace import make_subspace
from advcore.spec import AttackSpec, TrainingSpec

from test_attacks import gen, linear_model, linear_problem, oracle_accuracy, radii_for

ONE = 1e-6  # accuracies are exact fractions: compare with float slack only


def _spec(kind: str, norm: str, radii, **kw) -> AttackSpec:
    if kind == "apgd_t":
        return AttackSpec(kind="apgd", targeted=True, norm=norm, radii=radii, **kw)
    if kind == "apgd_dlr":
        return AttackSpec(kind="apgd", loss="dlr", norm=norm, radii=radii, **kw)
    return AttackSpec(kind=kind, norm=norm, radii=radii, **kw)


KINDS = ["apgd", "apgd_dlr", "apgd_t", "autoattack"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_apgd_reproduces_the_binary_linear_oracle_exactly_per_seed(kind, norm):
    x, y, w, b = linear_problem(30, n=300, s=3)  # (3, 300, 30): one linear model per seed
    radii = radii_for(norm)
    res = robust_accuracy(linear_model(w, b), x, y, _spec(kind, norm, radii), feature_ndim=1,
                          generator=[gen(40 + s) for s in range(3)])
    oracle = oracle_accuracy(x, y, w, b, radii, norm)  # (R, S)
    assert torch.equal(res.accuracy, oracle)
    assert res.margins.shape == (len(radii), 3, 300)
    assert oracle[-1].max() < 0.5 * oracle[0].min()  # the radii span a real drop
    assert (oracle[:, 0] != oracle[:, 1]).any()  # seeds really differ


def box_problem(seed: int, n: int = 400, d: int = 30):
    """A binary linear problem on [0,1]^d whose points crowd the faces, so the box binds."""
    g = gen(seed)
    w = torch.randn(d, generator=g)
    x = torch.rand(n, d, generator=g) ** 3
    x = torch.where(torch.rand(n, d, generator=g) < 0.5, x, 1 - x)
    b = -0.5 * float(w.sum())
    y = torch.sign(x @ w + b + 0.5 * torch.randn(n, generator=g))
    return x, y, w, b


def box_oracle_margins(x, y, w, b, radius: float, norm: str) -> torch.Tensor:
    """Exact worst-case margin of y*(w.x+b) over the ball intersected with [0,1]^d: coordinate i
    moves m_i <= room_i towards lowering the margin; linf: m_i = min(r, room_i); l2 (a convex
    program): m_i = min(t*|w_i|, room_i) with t set by bisection so that ||m||_2 = r."""
    ascent = -y[:, None] * w  # (N, d) the attacker's direction per coordinate
    room = torch.where(ascent > 0, 1 - x, x).double()
    a = ascent.abs().double().expand_as(room)
    if norm == "linf":
        move = room.clamp(max=radius)
    else:
        lo, hi = torch.zeros(len(x), dtype=torch.double), torch.full((len(x),), 1e6).double()
        for _ in range(200):
            t = (lo + hi) / 2
            over = (torch.minimum(t[:, None] * a, room) ** 2).sum(-1) > radius**2
            hi, lo = torch.where(over, t, hi), torch.where(over, lo, t)
        move = torch.minimum(lo[:, None] * a, room)
    return (y * (x @ w + b)).double() - (a * move).sum(-1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm,radii", [("linf", [0.0, 0.03, 0.08, 0.15, 0.3]),
                                        ("l2", [0.0, 0.2, 0.5, 1.0, 1.6])])
def test_apgd_reproduces_the_box_constrained_linear_oracle_exactly(kind, norm, radii):
    x, y, w, b = box_problem(31)
    res = robust_accuracy(linear_model(w, b), x, y, _spec(kind, norm, radii, box=[0.0, 1.0]),
                          feature_ndim=1, generator=gen(32))
    oracle = torch.stack([(box_oracle_margins(x, y, w, b, r, norm) > 0).float().mean()
                          for r in radii])
    unboxed = oracle_accuracy(x, y, w, b, radii, norm)
    assert (res.accuracy - oracle).abs().max() <= ONE
    assert (oracle - unboxed).max() >= 0.02  # the box really binds (8+ points)
    x_adv = perturb(linear_model(w, b), x, y, _spec(kind, norm, radii, box=[0.0, 1.0]),
                    radii[-1], feature_ndim=1, generator=gen(33))
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert ball_norm(x_adv - x, norm, 1).max() <= radii[-1] + 1e-5


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_apgd_t_finds_the_nearest_class_half_space_of_a_linear_k_class_model(norm):
    """Exact robust radius of x under a linear k-class model: min_t (z_y - z_t) / ||w_y - w_t||_*
    (the dual norm): the union of the half-spaces {z_t >= z_y}. APGD-T tries every class."""
    g = gen(34)
    n, d, k = 300, 20, 5
    W = torch.randn(k, d, generator=g)
    x = torch.randn(n, d, generator=g) * 1.5
    y = (x @ W.T + 0.8 * torch.randn(n, k, generator=g)).argmax(-1)
    model = lambda z: z @ W.T  # noqa: E731
    diffs = W[y].unsqueeze(1) - W.unsqueeze(0)  # (N, k, d)
    dual = diffs.norm(dim=-1) if norm == "l2" else diffs.abs().sum(-1)
    dist = (model(x).gather(1, y[:, None]) - model(x)) / dual.clamp_min(1e-12)
    dist = dist.scatter(1, y[:, None], float("inf")).amin(1)  # (N,)
    radii = [0.0, 0.2, 0.4, 0.8] if norm == "l2" else [0.0, 0.05, 0.1, 0.2]
    oracle = torch.stack([(dist > r).float().mean() for r in radii])
    for kind in ["apgd_t", "autoattack"]:
        res = robust_accuracy(model, x, y, _spec(kind, norm, radii, n_target_classes=4),
                              feature_ndim=1, generator=gen(35))
        assert (res.accuracy - oracle).abs().max() <= ONE, kind
    assert oracle[-1] < 0.6 * oracle[0]


def test_dlr_loss_matches_its_definition_and_ignores_logit_scale():
    g = gen(36)
    z = torch.randn(50, 6, generator=g)
    y = torch.randint(0, 6, (50,), generator=g)
    srt = z.sort(-1, descending=True).values
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    expected = -(z.gather(1, y[:, None]).squeeze(1) - other) / (srt[:, 0] - srt[:, 2] + 1e-12)
    assert torch.allclose(dlr_loss(z, y), expected)
    t = (y + 1) % 6
    expected_t = -(z.gather(1, y[:, None]) - z.gather(1, t[:, None])).squeeze(1) / (
        srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)
    assert torch.allclose(dlr_loss(z, y, t), expected_t)
    assert torch.allclose(dlr_loss(1e4 * z + 3.0, y), dlr_loss(z, y), atol=1e-4)


def test_checkpoints_follow_the_papers_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]  # gaps 2, then the minimum 1
    assert checkpoints(1) == [1]


def test_one_run_reaches_the_optimum_of_a_saturating_model():
    """tanh of a linear score: the first step (2 radii) overshoots to the boundary, the momentum
    and halving schedule must settle on the optimum -r*w/||w|| from the clean point."""
    g = gen(37)
    x = torch.randn(64, 10, generator=g)
    w = torch.randn(10, generator=g)
    y = torch.ones(64)
    threat = Threat("l2", 1.0, 1, 1)
    model = lambda z: torch.tanh(z @ w) + 5.0  # noqa: E731  margin stays > 0: nothing breaks
    delta, score = apgd_run(model, x, y, threat, steps=20, loss="margin",
                            start=torch.zeros_like(x))
    best = 5.0 + torch.tanh(x @ w - w.norm())
    assert torch.allclose(score, best, atol=1e-3)  # reached the boundary along -w
    assert (ball_norm(delta, "l2", 1) <= 1.0 + 1e-5).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_apgd_stays_in_the_subspace_and_the_per_patch_balls(norm):
    g = gen(38)
    n, p, d = 80, 4, 8
    x = torch.randn(n, p, d, generator=g)
    w = torch.randn(3, d, generator=g)
    model = lambda z: torch.relu(z @ w.T).sum(-2)  # (N, 3)  # noqa: E731
    y = model(x).argmax(-1)
    basis = torch.randn(5, p, d, generator=g)
    for kind in ["apgd", "apgd_t", "autoattack"]:
        spec = _spec(kind, norm, [1.0], steps=20)
        delta = perturb(model, x, y, spec, 1.0, feature_ndim=2, subspace_basis=basis,
                        generator=g) - x
        residual = delta - make_subspace(basis, tuple(x.shape), 2).project(delta)
        assert residual.abs().max() < 1e-5 and delta.abs().max() > 0.1
        assert ball_norm(delta, norm, 2).max() <= 1.0 + 1e-5
        patch = _spec(kind, norm, [0.5], steps=20, budget="per_patch")
        delta = perturb(model, x, y, patch, 0.5, feature_ndim=2, generator=g) - x
        assert ball_norm(delta, norm, 1).max() <= 0.5 + 1e-5
        assert ball_norm(delta, norm, 1).max() >= 0.45


@pytest.mark.parametrize("kind", ["apgd", "apgd_t", "autoattack"])
def test_batched_seeds_equal_separate_runs(kind):
    x, y, _, _ = linear_problem(39, n=120, d=10, s=3)
    g = gen(39)
    W1, w2 = torch.randn(3, 16, 10, generator=g), torch.randn(3, 16, 4, generator=g)

    def batched(z):  # (S, N, d) -> (S, N, 4): a two-layer 4-class net per seed
        return torch.einsum("snh,shc->snc", torch.relu(torch.einsum("snd,shd->snh", z, W1)), w2)

    y = batched(x).argmax(-1)
    spec = _spec(kind, "l2", [0.2, 0.8], steps=10, restarts=2)
    together = robust_accuracy(batched, x, y, spec, feature_ndim=1,
                               generator=[gen(100 + s) for s in range(3)])
    assert together.accuracy[-1].max() < 0.9  # the attack does something
    for s in range(3):
        def alone(z, s=s):  # (1, N', d) -> (1, N', 4)
            return batched(z.expand(3, *z.shape[1:]))[s:s + 1]
        single = robust_accuracy(alone, x[s:s + 1], y[s:s + 1], spec, feature_ndim=1,
                                 generator=[gen(100 + s)])
        assert torch.equal(single.accuracy[:, 0], together.accuracy[:, s])
        assert torch.allclose(single.margins[:, 0], together.margins[:, s], atol=1e-5)


def test_autoattack_is_never_weaker_than_its_apgd_ce_phase():
    g = gen(41)
    x = torch.randn(200, 10, generator=g)
    W1, W2 = torch.randn(32, 10, generator=g), torch.randn(5, 32, generator=g)
    model = lambda z: torch.relu(z @ W1.T) @ W2.T  # noqa: E731
    y = model(x).argmax(-1)
    radii = [0.1, 0.3, 0.6]
    ce = robust_accuracy(model, x, y, _spec("apgd", "l2", radii), feature_ndim=1,
                         generator=gen(42))
    auto = robust_accuracy(model, x, y, _spec("autoattack", "l2", radii), feature_ndim=1,
                           generator=gen(42))
    assert ((auto.margins > 0) <= (ce.margins > 0)).all()  # the same CE run, then more
    assert (auto.accuracy < ce.accuracy).any()


def test_restarts_never_lower_attack_strength():
    g = gen(43)
    x = torch.randn(300, 10, generator=g)
    w1, w2 = torch.randn(32, 10, generator=g), torch.randn(32, generator=g) / 32**0.5
    model = lambda z: torch.relu(z @ w1.T) @ w2  # noqa: E731
    y = torch.sign(model(x))
    one = robust_accuracy(model, x, y, _spec("apgd", "l2", [0.1, 0.3], steps=5, restarts=1),
                          feature_ndim=1, generator=gen(44))
    five = robust_accuracy(model, x, y, _spec("apgd", "l2", [0.1, 0.3], steps=5, restarts=5),
                           feature_ndim=1, generator=gen(44))
    assert (five.margins <= one.margins).all()


def test_targeted_apgd_reaches_a_given_class():
    g = gen(45)
    n, d, k = 300, 20, 4
    W = torch.randn(k, d, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ W.T).argmax(-1)
    model = lambda z: z @ W.T  # noqa: E731
    spec = AttackSpec(kind="apgd", norm="l2", radii=[0.0, 6.0], targeted=True, target=2)
    assert spec.loss == "dlr" and spec.label == "apgd_dlr_l2_to2"
    res = robust_accuracy(model, x, y, spec, feature_ndim=1, generator=g)
    assert res.target_success[0] == 0 and res.target_success[1] > 0.95


def test_apgd_on_a_binary_head_uses_the_margin_and_leaves_parameters_alone():
    layer = torch.nn.Linear(10, 1)
    x = torch.randn(50, 10, generator=gen(46))
    y = torch.sign(torch.randn(50, generator=gen(47)))
    model = lambda z: layer(z).squeeze(-1)  # noqa: E731
    for spec in [_spec("apgd_dlr", "l2", [0.5], steps=5), _spec("autoattack", "l2", [0.5])]:
        x_adv = perturb(model, x, y, spec, 0.5, feature_ndim=1, generator=gen(48))
        assert layer.weight.grad is None and not x_adv.requires_grad
        w = layer.weight.detach().squeeze(0)
        exact = margin(model(x), y) - 0.5 * w.norm()
        assert torch.allclose(margin(model(x_adv), y).detach(), exact, atol=1e-3)


def test_masking_flags_work_for_apgd_kinds():
    g = gen(49)
    x = torch.randn(300, 10, generator=g)
    w = torch.randn(10, generator=g)
    step_model = lambda z: torch.sign(z @ w) * 5.0  # noqa: E731  zero gradient everywhere
    y = torch.sign(x @ w)
    for kind in ["apgd", "apgd_dlr", "autoattack"]:
        res = robust_accuracy(step_model, x, y, _spec(kind, "l2", [0.0, 0.5]), feature_ndim=1,
                              generator=g)
        assert res.flags["zero_grad_fraction"] > 0.99 and res.flags["suspicious"]
    W = torch.randn(4, 10, generator=g)
    huge = lambda z: 1e4 * (z @ W.T)  # noqa: E731  CE ~ 0 on every correct point
    y = huge(x).argmax(-1)
    ce = robust_accuracy(huge, x, y, _spec("apgd", "l2", [0.0, 0.1]), feature_ndim=1,
                         generator=g)
    assert ce.flags["saturated_fraction"] > 0.9 and ce.flags["suspicious"]
    auto = robust_accuracy(huge, x, y, _spec("autoattack", "l2", [0.0, 0.1]), feature_ndim=1,
                           generator=g)
    assert not any("saturated" in r for r in auto.flags["reasons"])  # DLR does not saturate


def test_apgd_specs_fill_apgd_defaults_and_refuse_bad_combinations():
    auto = AttackSpec(kind="autoattack", norm="linf", radii=[0.1])
    assert auto.steps == 100 and auto.label == "autoattack_linf"
    assert AttackSpec(kind="apgd").loss == "ce" and AttackSpec(kind="apgd").label == "apgd_ce_l2"
    apgdt = AttackSpec(kind="apgd", targeted=True, n_target_classes=3)
    assert apgdt.loss == "dlr" and apgdt.label == "apgdt_l2"
    assert AttackSpec.model_validate(auto.model_dump()) == auto  # canonical form round-trips
    bad = [
        {"kind": "apgd", "steps": 20000},
        {"kind": "apgd", "restarts": 500},
        {"kind": "apgd", "targeted": True, "n_target_classes": 100},
        {"kind": "apgd", "targeted": True, "loss": "ce"},
        {"kind": "apgd", "step_size": 0.1},
        {"kind": "pgd", "loss": "dlr"},
        {"kind": "pgd", "n_target_classes": 3},
        {"kind": "autoattack", "loss": "ce"},
        {"kind": "autoattack", "targeted": True, "target": 1},
        {"kind": "autoattack", "random_start": False},
        {"kind": "pgd", "targeted": True},
    ]
    for body in bad:
        with pytest.raises(ValidationError):
            AttackSpec.model_validate(body)
    TrainingSpec(mode="adversarial", adversary={"kind": "apgd", "radii": [0.1], "steps": 10})
    with pytest.raises(ValidationError, match="adversary"):
        TrainingSpec(mode="adversarial", adversary={"kind": "autoattack", "radii": [0.1]})


def test_zero_radius_and_random_start_off_are_clean_accuracy_and_deterministic():
    x, y, w, b = linear_problem(50)
    spec = AttackSpec(kind="apgd", norm="l2", radii=[0.0, 1.0], random_start=False)
    one = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, generator=gen(1))
    assert one.accuracy[0] == (margin(linear_model(w, b)(x), y) > 0).float().mean()
    assert torch.equal(one.accuracy, oracle_accuracy(x, y, w, b, [0.0, 1.0], "l2"))
    first = perturb(linear_model(w, b), x, y, spec, 1.0, feature_ndim=1)
    assert torch.equal(first, perturb(linear_model(w, b), x, y, spec, 1.0, feature_ndim=1))


def test_run_apgd_only_attacks_points_not_yet_broken():
    """A worst case handed in is kept where it already breaks the point (AutoAttack's
    cascade), and improved elsewhere."""
    x, y, w, b = linear_problem(51, n=100)
    model = linear_model(w, b)
    threat = Threat("l2", 1.0, 1, 1)
    given = -0.5 * y[:, None] * w / w.norm()  # half the radius: breaks the closest points
    score = margin(model(x + given), y)
    delta, out = run_apgd(model, x, y, threat, steps=10, loss="dlr", best=(given, score),
                          generator=gen(52))
    broken = score <= 0
    assert torch.equal(delta[broken], given[broken]) and torch.equal(out[broken], score[broken])
    assert (out[~broken] < score[~broken]).all()
