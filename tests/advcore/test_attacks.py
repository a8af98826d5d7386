"""Attacks against independent oracles: closed forms on linear models, feasibility checks,
batched-vs-separate equivalence and the gradient-masking flags."""

from __future__ import annotations

import pytest
import torch

from advcore.attacks import perturb, robust_accuracy
from advcore.attacks.losses import margin
from advcore.attacks.norms import ball_norm
from advcore.attacks.subspace import make_subspace
from advcore.spec import AttackSpec

RADII = [0.0, 0.25, 0.5, 1.0, 2.0, 3.0]


def linear_problem(seed: int, n: int = 400, d: int = 30, s: int | None = None):
    """x, y, w, b of a binary linear problem with label noise (margins of both signs)."""
    g = torch.Generator().manual_seed(seed)
    lead = (n,) if s is None else (s, n)
    w = torch.randn(*lead[:-1], d, generator=g)
    b = 0.3
    x = 2 * torch.randn(*lead, d, generator=g)
    clean = torch.einsum("...nd,...d->...n", x, w) + b
    y = torch.sign(clean + 3 * torch.randn(*lead, generator=g))
    return x, y, w, b


def linear_model(w, b):
    return lambda x: torch.einsum("...nd,...d->...n", x, w) + b


def oracle_accuracy(x, y, w, b, radii, norm):
    """Exact robust accuracy of a linear binary model: y*f(x) > r * ||w||_dual."""
    dual = w.norm(dim=-1) if norm == "l2" else w.abs().sum(-1)  # (*B)
    m = y * linear_model(w, b)(x)  # (*B, N)
    return torch.stack([(m > r * dual.unsqueeze(-1)).float().mean(-1) for r in radii])


def radii_for(norm):
    """Radii spanning the accuracy drop: ||w||_1 is ~sqrt(d) times ||w||_2."""
    return RADII if norm == "l2" else [r / 5 for r in RADII]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_matches_linear_oracle_within_one_point(norm):
    x, y, w, b = linear_problem(0)
    radii = radii_for(norm)
    spec = AttackSpec(kind="pgd", norm=norm, radii=radii, random_start=False)
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, generator=gen())
    oracle = oracle_accuracy(x, y, w, b, radii, norm)
    assert res.radii == radii
    assert res.accuracy.shape == (len(radii),)
    assert (res.accuracy - oracle).abs().max() <= 1 / x.shape[0] + 1e-6
    assert oracle[0] > 0.7 and oracle[-1] < 0.5 * oracle[0]  # the radii span a real drop


def test_linf_pgd_with_random_start_matches_linear_oracle():
    x, y, w, b = linear_problem(1)
    radii = [0.0, 0.05, 0.1, 0.2, 0.4]
    spec = AttackSpec(kind="pgd", norm="linf", radii=radii)  # default: random start
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, generator=gen())
    oracle = oracle_accuracy(x, y, w, b, radii, "linf")
    assert (res.accuracy - oracle).abs().max() <= 1 / x.shape[0] + 1e-6
    assert oracle[-1] < 0.5 * oracle[0]


def test_l2_pgd_with_random_start_and_large_steps_matches_linear_oracle():
    x, y, w, b = linear_problem(2)
    spec = AttackSpec(kind="pgd", norm="l2", radii=RADII, step_size=4.0, restarts=2)
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, generator=gen())
    oracle = oracle_accuracy(x, y, w, b, RADII, "l2")
    assert (res.accuracy - oracle).abs().max() <= 1 / x.shape[0] + 1e-6


def test_l2_pgd_auto_step_from_random_start_is_near_optimal():
    """2.5*r/steps travels 2.5 radii, so the random start's orthogonal part decays only by
    ~e^-2.5: the attack must still reach >= 97% of the optimal margin drop r*||w||."""
    x, y, w, b = linear_problem(3)
    spec = AttackSpec(kind="pgd", norm="l2", radii=[1.0, 2.0], steps=20)
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, generator=gen())
    upper = oracle_accuracy(x, y, w, b, [0.97, 1.94], "l2")
    exact = oracle_accuracy(x, y, w, b, [1.0, 2.0], "l2")
    assert (res.accuracy <= upper + 1e-6).all() and (res.accuracy >= exact - 1e-6).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_oracle_holds_per_seed_with_a_leading_seed_dim(norm):
    x, y, w, b = linear_problem(4, n=300, s=3)  # x (3, 300, 30), w (3, 30)
    radii = radii_for(norm)
    spec = AttackSpec(kind="pgd", norm=norm, radii=radii, random_start=False)
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1)
    oracle = oracle_accuracy(x, y, w, b, radii, norm)  # (R, S)
    assert res.accuracy.shape == (len(radii), 3)
    assert (res.accuracy - oracle).abs().max() <= 1 / 300 + 1e-6
    assert (oracle[:, 0] != oracle[:, 1]).any()  # seeds really differ


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fgsm_is_exact_on_a_linear_model(norm):
    x, y, w, b = linear_problem(5)
    radii = radii_for(norm)
    spec = AttackSpec(kind="fgsm", norm=norm, radii=radii)
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1)
    oracle = oracle_accuracy(x, y, w, b, radii, norm)
    assert (res.accuracy - oracle).abs().max() <= 1 / x.shape[0] + 1e-6


def test_radius_zero_gives_clean_accuracy():
    x, y, w, b = linear_problem(6)
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0])
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, generator=gen())
    clean = (margin(linear_model(w, b)(x), y) > 0).float().mean()
    assert res.accuracy[0] == clean


def test_k_class_margin_pgd_reaches_the_linear_polytope_distance():
    """Multi-class linear model: the exact l2 robust radius of x is
    min_j (z_y - z_j) / ||w_y - w_j||; PGD on the margin loss must find it (within 2%)."""
    g = gen(7)
    n, d, k = 400, 20, 5
    W = torch.randn(k, d, generator=g)
    x = torch.randn(n, d, generator=g) * 1.5
    y = (x @ W.T + 0.8 * torch.randn(n, k, generator=g)).argmax(-1)
    model = lambda z: z @ W.T  # noqa: E731
    z = model(x)
    diffs = W[y].unsqueeze(1) - W.unsqueeze(0)  # (N, k, d)
    dist = (z.gather(1, y[:, None]) - z) / diffs.norm(dim=-1).clamp_min(1e-12)
    dist = dist.scatter(1, y[:, None], float("inf")).amin(1)  # (N,)
    radii = [0.0, 0.2, 0.4, 0.8]
    spec = AttackSpec(kind="pgd", norm="l2", radii=radii, steps=50, random_start=False)
    res = robust_accuracy(model, x, y, spec, feature_ndim=1)
    oracle = torch.stack([(dist > r).float().mean() for r in radii])
    assert (res.accuracy - oracle).abs().max() <= 0.02
    assert oracle[-1] < 0.6 * oracle[0]


def test_targeted_attack_reaches_its_target_class():
    g = gen(8)
    n, d, k = 300, 20, 4
    W = torch.randn(k, d, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ W.T).argmax(-1)
    model = lambda z: z @ W.T  # noqa: E731
    spec = AttackSpec(kind="pgd", norm="l2", radii=[6.0], targeted=True, target=2, steps=40)
    x_adv = perturb(model, x, y, spec, 6.0, feature_ndim=1, generator=g)
    pred = model(x_adv).argmax(-1)
    assert (pred == 2).float().mean() > 0.95
    assert ((x @ W.T).argmax(-1) == 2).float().mean() < 0.5
    res = robust_accuracy(model, x, y, spec.model_copy(update={"radii": [0.0, 6.0]}),
                          feature_ndim=1, generator=g)
    assert res.target_success[0] == 0 and res.target_success[1] > 0.95
    assert res.accuracy[1] < 0.3  # class-2 points stay correct, the others moved to class 2


def small_mlp(seed: int, d: int, width: int = 32):
    g = gen(seed)
    w1, w2 = torch.randn(width, d, generator=g), torch.randn(width, generator=g) / width**0.5
    return lambda x: torch.relu(x @ w1.T) @ w2


def test_restarts_never_lower_attack_strength():
    g = gen(9)
    x = torch.randn(300, 10, generator=g)
    model = small_mlp(9, 10)
    y = torch.sign(model(x))
    spec1 = AttackSpec(kind="pgd", norm="l2", radii=[0.1, 0.3, 0.6], steps=5, restarts=1)
    spec5 = spec1.model_copy(update={"restarts": 5})
    one = robust_accuracy(model, x, y, spec1, feature_ndim=1, generator=gen(10))
    five = robust_accuracy(model, x, y, spec5, feature_ndim=1, generator=gen(10))
    assert (five.margins <= one.margins).all()
    assert (five.accuracy <= one.accuracy).all()
    assert (five.margins < one.margins).any()  # the extra restarts did find something


def test_box_is_respected_when_given():
    g = gen(11)
    x = torch.rand(200, 1, 4, 4, generator=g)  # images in [0, 1]
    model = lambda z: z.flatten(-3).sum(-1) - 8.0  # noqa: E731
    y = torch.where(model(x) > 0, 1.0, -1.0)
    for norm, r in [("l2", 2.0), ("linf", 0.5)]:
        spec = AttackSpec(kind="pgd", norm=norm, radii=[r], box=[0.0, 1.0])
        x_adv = perturb(model, x, y, spec, r, feature_ndim=3, generator=g)
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert (x_adv != x).any()


def test_no_box_leaves_synthetic_data_unclamped():
    g = gen(12)
    x = torch.rand(200, 1, 4, 4, generator=g)
    model = lambda z: z.flatten(-3).sum(-1) - 8.0  # noqa: E731
    y = torch.where(model(x) > 0, 1.0, -1.0)
    spec = AttackSpec(kind="pgd", norm="linf", radii=[0.5])  # box None: unbounded
    x_adv = perturb(model, x, y, spec, 0.5, feature_ndim=3, generator=g)
    assert x_adv.min() < -0.2 and x_adv.max() > 1.2


@pytest.mark.parametrize("norm,budget", [("l2", "global"), ("linf", "global"),
                                         ("l2", "per_patch"), ("linf", "per_patch")])
def test_perturbation_norms_stay_within_the_radius(norm, budget):
    g = gen(13)
    n, p, d = 100, 6, 8  # patch inputs (N, P, d)
    x = torch.randn(n, p, d, generator=g)
    w = torch.randn(3, d, generator=g)
    model = lambda z: torch.relu(z @ w.T).sum(-2)  # (N, 3) class scores  # noqa: E731
    y = model(x).argmax(-1)
    r = 0.7
    spec = AttackSpec(kind="pgd", norm=norm, radii=[r], budget=budget)
    delta = perturb(model, x, y, spec, r, feature_ndim=2, generator=g) - x
    norms = ball_norm(delta, norm, 1 if budget == "per_patch" else 2)
    assert norms.max() <= r + 1e-5
    assert norms.max() >= 0.9 * r  # the attack uses its budget
    if budget == "per_patch":
        # a per-patch budget allows far more than the global one
        assert ball_norm(delta, norm, 2).max() > 1.5 * r or norm == "linf"


def test_subspace_attack_stays_in_the_span_of_its_basis():
    g = gen(14)
    n, p, d = 100, 4, 8
    x = torch.randn(n, p, d, generator=g)
    w = torch.randn(3, d, generator=g)
    model = lambda z: torch.relu(z @ w.T).sum(-2)  # noqa: E731
    y = model(x).argmax(-1)
    basis = torch.randn(5, p, d, generator=g)  # (n_dirs, *F), not even orthonormal
    for norm in ["l2", "linf"]:
        spec = AttackSpec(kind="pgd", norm=norm, radii=[1.0])
        delta = perturb(model, x, y, spec, 1.0, feature_ndim=2, subspace_basis=basis,
                        generator=g) - x
        residual = delta - make_subspace(basis, tuple(x.shape), 2).project(delta)
        assert residual.abs().max() < 1e-5
        assert delta.abs().max() > 0.1
        assert ball_norm(delta, norm, 2).max() <= 1.0 + 1e-5


def patch_problem(seed: int, s: int = 2, n: int = 60, p: int = 5, d: int = 8, k: int = 3):
    """Per-seed patch inputs (S, N, P, d), a batched patch model and per-seed features (S, k, d)."""
    g = gen(seed)
    x = torch.randn(s, n, p, d, generator=g)
    w = torch.randn(s, k, d, generator=g)
    model = lambda z: torch.relu(torch.einsum("snpd,skd->snpk", z, w)).sum(-2)  # noqa: E731
    features = torch.linalg.qr(torch.randn(s, d, k, generator=g)).Q.transpose(-1, -2)
    return x, model(x).argmax(-1), model, features


@pytest.mark.parametrize("norm,budget", [("l2", "global"), ("l2", "per_patch"),
                                         ("linf", "global")])
def test_per_patch_subspace_projects_every_patch_onto_the_seed_features(norm, budget):
    x, y, model, features = patch_problem(23)  # features (S, k, d): one set per seed
    spec = AttackSpec(kind="pgd", norm=norm, radii=[0.8], budget=budget)
    delta = perturb(model, x, y, spec, 0.8, feature_ndim=2, subspace_basis=features,
                    generator=[gen(1), gen(2)]) - x  # (S, N, P, d)
    coef = torch.einsum("snpd,skd->snpk", delta, features)
    in_span = torch.einsum("snpk,skd->snpd", coef, features)
    assert (delta - in_span).abs().max() < 1e-5
    assert ball_norm(delta, norm, 1 if budget == "per_patch" else 2).max() <= 0.8 + 1e-5
    assert delta.abs().max() > 0.05
    other = features.flip(0)  # the other seed's features: the delta must not live there
    other_span = torch.einsum("snpk,skd->snpd", torch.einsum("snpd,skd->snpk", delta, other),
                              other)
    assert (delta - other_span).abs().max() > 0.01


def test_per_example_subspace_basis_can_differ_per_seed():
    x, y, model, _ = patch_problem(24)
    basis = torch.randn(2, 4, *x.shape[2:], generator=gen(24))  # (S, K, P, d)
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0, 0.5, 1.0])
    delta = perturb(model, x, y, spec, 1.0, feature_ndim=2, subspace_basis=basis) - x
    sub = make_subspace(basis, tuple(x.shape), 2)
    assert (delta - sub.project(delta)).abs().max() < 1e-5
    res = robust_accuracy(model, x, y, spec, feature_ndim=2, subspace_basis=basis)
    assert res.accuracy.shape == (3, 2) and (res.accuracy[0] == 1).all()


def test_ambiguous_subspace_basis_shape_is_refused():
    x = torch.zeros(2, 10, 4, 8)  # (S, N, P, d) with P == K == 4
    basis = torch.randn(2, 4, 8)  # per-seed per-patch (S, K, d) or shared per-example (K, P, d)?
    with pytest.raises(ValueError, match="basis_ndim"):
        make_subspace(basis, tuple(x.shape), 2)
    assert make_subspace(basis, tuple(x.shape), 2, basis_ndim=1).ndim == 1


def test_feature_direction_attack_equals_its_closed_form():
    x, y, w, b = linear_problem(15, s=2)  # (2, N, d): one direction per seed
    direction = torch.randn(2, x.shape[-1], generator=gen(15))
    unit = direction / direction.norm(dim=-1, keepdim=True)
    spec = AttackSpec(kind="feature_direction", radii=[0.0, 1.0, 2.5])
    res = robust_accuracy(linear_model(w, b), x, y, spec, feature_ndim=1, direction=direction)
    for i, r in enumerate(spec.radii):
        x_adv = x - r * y.unsqueeze(-1) * unit.unsqueeze(1)
        expected = (margin(linear_model(w, b)(x_adv), y) > 0).float().mean(-1)
        x_ours = perturb(linear_model(w, b), x, y, spec, r, feature_ndim=1, direction=direction)
        assert torch.allclose(x_ours, x_adv, atol=1e-5)
        assert torch.equal(res.accuracy[i], expected)


def test_masking_flags_fire_on_a_step_function_model():
    g = gen(16)
    x = torch.randn(300, 10, generator=g)
    w = torch.randn(10, generator=g)
    step_model = lambda z: torch.sign(z @ w) * 5.0  # noqa: E731  zero gradient everywhere
    y = torch.sign(x @ w)
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0, 0.5, 1.0])
    res = robust_accuracy(step_model, x, y, spec, feature_ndim=1, generator=g)
    assert res.flags["zero_grad_fraction"] > 0.99
    assert res.flags["suspicious"]


def test_masking_flags_fire_on_saturated_cross_entropy():
    g = gen(17)
    x = torch.randn(300, 10, generator=g)
    W = torch.randn(4, 10, generator=g)
    huge = lambda z: 1e4 * (z @ W.T)  # noqa: E731  CE ~ 0 on every correct point
    y = huge(x).argmax(-1)
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0, 0.1], loss="ce")
    res = robust_accuracy(huge, x, y, spec, feature_ndim=1, generator=g)
    assert res.flags["saturated_fraction"] > 0.9
    assert res.flags["suspicious"]


def test_masking_flags_stay_quiet_on_a_healthy_model():
    g = gen(18)
    x = torch.randn(300, 10, generator=g)
    model = small_mlp(18, 10)
    y = torch.sign(model(x))
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0, 0.2, 0.5, 1.0])
    res = robust_accuracy(model, x, y, spec, feature_ndim=1, generator=g)
    assert not res.flags["suspicious"], res.flags["reasons"]
    assert res.flags["zero_grad_fraction"] < 0.01
    assert res.accuracy[-1] < res.accuracy[0]


def test_batched_seeds_equal_separate_runs_given_one_generator_per_seed():
    x, y, w1, _ = linear_problem(19, n=200, d=10, s=3)
    g = gen(19)
    w2 = torch.randn(3, 16, generator=g)
    W1 = torch.randn(3, 16, 10, generator=g)

    def batched(z):  # (S, N, d) -> (S, N): a two-layer net per seed
        return torch.einsum("snh,sh->sn", torch.relu(torch.einsum("snd,shd->snh", z, W1)), w2)

    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.2, 0.8], steps=5, restarts=2)
    y = torch.sign(batched(x))
    together = robust_accuracy(batched, x, y, spec, feature_ndim=1,
                               generator=[gen(100 + s) for s in range(3)])
    for s in range(3):
        def alone(z, s=s):  # (1, N, d) -> (1, N)
            return batched(z.expand(3, *z.shape[1:]))[s:s + 1]
        single = robust_accuracy(alone, x[s:s + 1], y[s:s + 1], spec, feature_ndim=1,
                                 generator=[gen(100 + s)])
        assert torch.allclose(single.margins[:, 0], together.margins[:, s], atol=1e-5)
        assert torch.equal(single.accuracy[:, 0], together.accuracy[:, s])


def test_perturb_leaves_model_parameter_gradients_untouched():
    layer = torch.nn.Linear(10, 1)
    x = torch.randn(50, 10, generator=gen(20))
    y = torch.sign(torch.randn(50, generator=gen(21)))
    model = lambda z: layer(z).squeeze(-1)  # noqa: E731
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.5], steps=3)
    x_adv = perturb(model, x, y, spec, 0.5, feature_ndim=1, generator=gen(22))
    assert layer.weight.grad is None and not x_adv.requires_grad


def test_feature_direction_attack_moves_class_labels_away_from_their_own_feature():
    g = gen(25)
    features = torch.eye(6)[:3]  # (C, d) one direction per class
    x = 2 * features[torch.arange(30) % 3] + 0.1 * torch.randn(30, 6, generator=g)
    y = torch.arange(30) % 3
    spec = AttackSpec(kind="feature_direction", radii=[1.5])
    x_adv = perturb(lambda z: z @ features.T, x, y, spec, 1.5, feature_ndim=1,
                    direction=features)
    assert torch.allclose(x_adv, x - 1.5 * features[y])
    with pytest.raises(ValueError, match="binary"):
        perturb(lambda z: z @ features.T, x, y, spec, 1.5, feature_ndim=1,
                direction=features[0])  # one binary direction cannot serve class labels


def test_accuracy_rising_with_radius_is_flagged_and_then_made_monotone():
    """1-d model wrong only in the band 0.5 < |z| < 1 (a slight slope gives a gradient): FGSM
    at radius 0.7 lands in the band, at radius 3 it jumps over it -- raw accuracy rises."""
    x, y = torch.zeros(200, 1), torch.ones(200)

    def band_model(z):  # (N, 1) -> (N,)
        t = z.squeeze(-1)
        in_band = (t.abs() > 0.5) & (t.abs() < 1.0)
        return torch.where(in_band, -1.0, 1.0) * (1 + t**2) + 1e-3 * t

    spec = AttackSpec(kind="fgsm", norm="l2", radii=[0.7, 3.0])
    res = robust_accuracy(band_model, x, y, spec, feature_ndim=1)
    assert res.flags["rises_with_radius"] and res.flags["suspicious"]
    assert res.accuracy[0] == 0 and res.accuracy[1] == 0  # radius 3 inherits radius 0.7's break


def test_a_model_that_ignores_its_input_is_flagged_not_crashed():
    x = torch.randn(100, 5, generator=gen(26))
    y = torch.ones(100)
    constant = lambda z: torch.ones(z.shape[:-1])  # noqa: E731  no graph to x at all
    spec = AttackSpec(kind="pgd", norm="l2", radii=[0.0, 1.0])
    res = robust_accuracy(constant, x, y, spec, feature_ndim=1, generator=gen(26))
    assert res.accuracy.tolist() == [1.0, 1.0]
    assert res.flags["zero_grad_fraction"] == 1.0 and res.flags["suspicious"]
