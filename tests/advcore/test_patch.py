"""Unit tests of the patch data model and the smoothed-ReLU patch CNN (science.md §B)."""

from __future__ import annotations

import torch

from advcore.data import build_data, stack_seeds
from advcore.learners import build_learner
from advcore.learners.patch_cnn import PatchCNN, smoothed_relu
from advcore.measure import correlation_records
from advcore.spec import ExperimentSpec, PatchCNN as PatchCNNSpec, PatchData


def _data(**kw):
    base = dict(k=3, d=16, patches=6, n_robust=2, alpha=1.0, beta=0.25, sigma_n=0.0,
                n_train=60, n_test=30)
    return build_data(PatchData(**{**base, **kw}), seed=0)


def test_patch_data_has_documented_shapes_and_labels():
    ds = _data(sigma_n=0.1)
    assert ds.x_train.shape == (60, 6, 16) and ds.x_test.shape == (30, 6, 16)
    assert ds.y_train.dtype == torch.long and set(ds.y_train.tolist()) == {0, 1, 2}
    assert torch.bincount(ds.y_train).tolist() == [20, 20, 20]  # balanced classes
    assert ds.feature_ndim == 2 and ds.box is None and ds.n_classes == 3
    assert ds.features["robust"].shape == (3, 16) and ds.features["non_robust"].shape == (3, 16)
    assert torch.equal(ds.y_train_fine, ds.y_train)


def test_patch_features_are_orthonormal_for_both_kinds():
    for kind in ("random_orthogonal", "sparse_robust"):
        ds = _data(features=kind)
        basis = torch.cat([ds.features["robust"], ds.features["non_robust"]])  # (2k, d)
        assert torch.allclose(basis @ basis.T, torch.eye(6), atol=1e-5), kind


def test_sparse_robust_features_are_axis_aligned_and_non_robust_ones_dense():
    ds = _data(features="sparse_robust")
    assert torch.equal(ds.features["robust"], torch.eye(16)[:3])
    v = ds.features["non_robust"]
    assert (v[:, 3:].abs() > 0).all()  # dense on the other coordinates
    assert (v.abs().sum(-1) > 2.0).all()  # l1 norm ~ sqrt(2(d-k)/pi): l_inf leverage on v


def test_each_sample_has_n_robust_patches_with_alpha_u_and_the_rest_beta_v():
    ds = _data()
    u = ds.features["robust"][ds.y_train]  # (N, d)
    v = ds.features["non_robust"][ds.y_train]
    on_u = torch.einsum("npd,nd->np", ds.x_train, u)  # (N, P)
    on_v = torch.einsum("npd,nd->np", ds.x_train, v)
    is_robust = on_u > 0.5
    assert (is_robust.sum(1) == 2).all()
    assert torch.allclose(on_u[is_robust], torch.ones(()), atol=1e-5)
    assert torch.allclose(on_v[~is_robust], torch.full((), 0.25), atol=1e-5)
    assert torch.allclose(on_v[is_robust], torch.zeros(()), atol=1e-5)


def test_robust_patch_positions_are_random_per_sample():
    ds = _data(n_train=200)
    u = ds.features["robust"][ds.y_train]
    positions = torch.einsum("npd,nd->np", ds.x_train, u) > 0.5  # (N, P)
    assert positions.float().mean(0).min() > 0.15  # every position gets robust patches
    assert len({tuple(row.tolist()) for row in positions}) > 10


def test_strength_ranges_draw_uniformly_within_bounds():
    ds = _data(beta=[0.1, 0.3], n_train=300)
    v = ds.features["non_robust"][ds.y_train]
    on_v = torch.einsum("npd,nd->np", ds.x_train, v)
    values = on_v[on_v > 1e-6]
    assert values.min() >= 0.1 - 1e-5 and values.max() <= 0.3 + 1e-5
    assert abs(values.mean().item() - 0.2) < 0.01 and values.std() > 0.05


def test_patch_data_is_reproducible_per_seed_and_differs_across_seeds():
    spec = PatchData(k=2, d=8, patches=4, n_train=10, n_test=10)
    a, b, c = build_data(spec, 3), build_data(spec, 3), build_data(spec, 4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.features["robust"], b.features["robust"])
    assert not torch.equal(a.x_train, c.x_train)


def test_smoothed_relu_matches_its_closed_form():
    q, rho = 3.0, 0.5
    z = torch.linspace(-1.0, 2.0, 301, dtype=torch.float64)
    expected = torch.where(z <= 0, torch.zeros_like(z),
                           torch.where(z <= rho, z**q / (q * rho ** (q - 1)), z - (1 - 1 / q) * rho))
    assert torch.allclose(smoothed_relu(z, q, rho), expected, atol=1e-12)


def test_smoothed_relu_is_continuously_differentiable_at_zero_and_rho():
    q, rho, h = 3.0, 0.5, 1e-6
    z = torch.tensor([-h, 0.0, h, rho - h, rho, rho + h], dtype=torch.float64, requires_grad=True)
    value = smoothed_relu(z, q, rho)
    (grad,) = torch.autograd.grad(value.sum(), z)
    assert torch.allclose(value[:3], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(grad[:3], torch.zeros(3, dtype=torch.float64), atol=1e-9)  # C^1 at 0
    assert torch.allclose(grad[3:], torch.ones(3, dtype=torch.float64), atol=1e-5)  # C^1 at rho
    assert abs(value[4].item() - rho / q) < 1e-12  # both pieces meet at rho / q


def test_patch_cnn_sums_smoothed_relu_over_filters_and_patches():
    spec = PatchCNNSpec(width=3, q=3.0, rho=0.2, init_scale=1.0)
    model = PatchCNN(spec, (5, 4), 2, seeds=[0, 1])
    x = torch.randn(2, 7, 5, 4, generator=torch.Generator().manual_seed(0))  # (S, N, P, d)
    pre = torch.einsum("snpd,skmd->snkmp", x, model.w)  # independent contraction order
    expected = smoothed_relu(pre, 3.0, 0.2).sum(dim=(-1, -2))  # (S, N, k)
    assert torch.allclose(model(x), expected, atol=1e-5)
    assert model(x[:, None]).shape == (2, 1, 7, 2)  # arbitrary leading dims after S


def test_patch_cnn_first_layer_rows_and_classes_line_up():
    model = PatchCNN(PatchCNNSpec(width=3), (5, 4), 2, seeds=[0])
    rows = model.first_layer()
    assert rows.shape == (1, 6, 4)
    assert torch.equal(rows[0, 4], model.w[0, 1, 1])  # class 1, filter 1 -> row 1*3 + 1
    assert model.neuron_classes().tolist() == [0, 0, 0, 1, 1, 1]
    assert model.neuron_labels()[4] == "1.1"


def test_batched_seeds_initialise_like_separate_runs():
    spec = PatchCNNSpec(width=4)
    both = PatchCNN(spec, (6, 8), 3, seeds=[5, 9])
    assert torch.equal(both.w[0], PatchCNN(spec, (6, 8), 3, seeds=[5]).w[0])
    assert torch.equal(both.w[1], PatchCNN(spec, (6, 8), 3, seeds=[9]).w[0])


def test_corr_metrics_take_the_max_over_the_own_class_filters():
    spec = ExperimentSpec(data=PatchData(k=2, d=8, patches=4, n_train=8, n_test=8),
                          learner=PatchCNNSpec(width=2)).resolve()
    data = stack_seeds([build_data(spec.data, 0)])
    model = build_learner(spec, data.in_shape, 2, [0])
    u, v = data.features["robust"][0], data.features["non_robust"][0]  # (k, d)
    with torch.no_grad():
        model.w.zero_()
        model.w[0, 0, 0] = 0.3 * u[0] + 0.9 * v[0]
        model.w[0, 0, 1] = 0.7 * u[0]
        model.w[0, 1, 0] = 5.0 * u[0] + 0.2 * u[1]  # class 1's filter on class 0's u: ignored
    metrics, matrices, _ = correlation_records(model, data.features, step=1, seeds=[0])
    value = {m.name: m.value for m in metrics}
    assert abs(value["corr/robust/0"] - 0.7) < 1e-5 and abs(value["corr/non_robust/0"] - 0.9) < 1e-5
    assert abs(value["corr/robust/1"] - 0.2) < 1e-5
    assert {m.name for m in matrices} == {"cosine/robust", "cosine/non_robust"}


def _tiny_adversarial_spec(seeds):
    from advcore.spec import parse_spec

    return parse_spec({
        "seeds": seeds,
        "data": {"kind": "patch", "k": 3, "d": 12, "patches": 5, "beta": 0.4, "n_train": 40,
                 "n_test": 20, "features": "sparse_robust"},
        "learner": {"kind": "patch_cnn", "width": 2, "rho": 0.1},
        "training": {"mode": "adversarial", "optimizer": {"kind": "sgd", "lr": 0.05},
                     "epochs": 2, "batch_size": 20,
                     "adversary": {"kind": "pgd", "norm": "linf", "radii": [0.05], "steps": 3}},
        "evaluation": {"every": 1, "attacks": [{"kind": "pgd", "norm": "linf", "radii": [0.05],
                                                "steps": 3}]},
    })


def test_batched_seeds_train_like_separate_runs_on_the_patch_model():
    from advcore.observe import CollectingObserver
    from advcore.run import run_experiment

    both, alone = CollectingObserver(), CollectingObserver()
    run_experiment(_tiny_adversarial_spec([3, 7]), both, device="cpu")
    run_experiment(_tiny_adversarial_spec([7]), alone, device="cpu")
    batched = {(r.name, r.step): r.value for r in both.metrics if r.seed == 7}
    separate = {(r.name, r.step): r.value for r in alone.metrics}
    assert batched.keys() == separate.keys() and any(k[0].startswith("corr/robust") for k in batched)
    for key, value in separate.items():
        assert abs(batched[key] - value) < 1e-4, key


def test_filter_l1_projection_is_the_euclidean_projection_onto_the_l1_ball():
    from types import SimpleNamespace

    model = PatchCNN(SimpleNamespace(q=3.0, rho=0.1, width=3, init_scale=5.0, max_filter_l1=1.0),
                     (5, 16), 4, [0, 1])
    model.w.data[0, 0, 0] = 0.01  # a filter inside the ball stays as it is
    before = model.w.detach().clone()
    model.constrain_()
    after = model.w.detach()
    assert torch.equal(after[0, 0, 0], before[0, 0, 0])
    norms = after.abs().sum(-1)
    assert torch.allclose(norms[before.abs().sum(-1) > 1.0], torch.tensor(1.0), atol=1e-5)
    # the projection soft-thresholds |w| by the theta that bisection finds for ||w||_1 = 1
    for row, proj in zip(before.reshape(-1, 16), after.reshape(-1, 16)):
        if float(row.abs().sum()) <= 1.0:
            continue
        lo, hi = 0.0, float(row.abs().max())
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float((row.abs() - mid).clamp(min=0).sum()) > 1.0 else (lo, mid)
        assert torch.allclose(proj, row.sign() * (row.abs() - lo).clamp(min=0), atol=1e-5)


def _trained(spec, seed: int = 3):
    """The patch CNN after `train` on spec (one seed)."""
    from advcore.evaluate import Evaluator
    from advcore.observe import CollectingObserver
    from advcore.train import make_task, train

    data = stack_seeds([build_data(spec.data, seed)])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, [seed], torch.device("cpu"))
    observer = CollectingObserver()
    train(spec, model, data, task, observer, Evaluator(spec, model, data, task, observer))
    return model.w.detach()[0]  # (k, m, d)


def test_training_keeps_every_filter_inside_the_l1_ball_and_without_it_they_leave():
    largest = {}
    for max_l1 in (None, 0.3):
        spec = _tiny_adversarial_spec([3])
        spec.learner.max_filter_l1 = max_l1
        spec.learner.init_scale = 2.0  # filters start with ||w||_1 ~ 2 sqrt(2d/pi) / sqrt(d) ~ 1.6
        largest[max_l1] = float(_trained(spec).abs().sum(-1).max())
    assert largest[None] > 1.0 and largest[0.3] <= 0.3 + 1e-5, largest


def test_l1_penalty_soft_thresholds_the_weights_after_each_step():
    spec = _tiny_adversarial_spec([3])
    spec.learner.init_scale = 2.0
    plain = _trained(spec)
    spec.training.optimizer.l1 = 0.5  # threshold lr * l1 = 0.025 per step, 4 steps
    sparse = _trained(spec)
    assert float(sparse.abs().sum()) < float(plain.abs().sum()) - 0.05 * plain.numel()
    assert float((sparse == 0).float().mean()) > 0.1 and not bool((plain == 0).any())
    spec.training.optimizer.l1 = 100.0  # far above every weight: one step zeroes them all
    assert not bool(_trained(spec).any())
