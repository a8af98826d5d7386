"""Learners: shapes, the fixed second layer, initialisation, and seed batching."""

from __future__ import annotations

import math

import pytest
import torch

from advcore.learners import build_learner
from advcore.spec import parse_spec


def _spec(learner: dict, data: dict | None = None):
    data = data or {"kind": "multi_cluster", "d": 30, "k": 4, "n_train": 10, "n_test": 10}
    return parse_spec({"data": data, "learner": learner}).resolve()


def test_two_layer_binary_head_has_fixed_plus_minus_one_over_m_second_layer():
    model = build_learner(_spec({"kind": "two_layer_relu", "width": 6}), (30,), 1, [0, 1])
    assert torch.allclose(model.second[0], torch.tensor([1 / 6] * 3 + [-1 / 6] * 3))
    assert "second" not in dict(model.named_parameters())
    assert model.neuron_labels() == ["+0", "+1", "+2", "-0", "-1", "-2"]


def test_two_layer_init_has_the_paper_scales():
    spec = _spec({"kind": "two_layer_relu", "width": 400, "init_scale": 0.5}, {"kind": "multi_cluster", "d": 400})
    model = build_learner(spec, (400,), 1, [0])
    assert model.weight.std().item() == pytest.approx(0.5 / math.sqrt(400), rel=0.02)
    assert model.bias.std().item() == pytest.approx(1 / 400, rel=0.1)


def test_two_layer_computes_sum_of_signed_relus():
    model = build_learner(_spec({"kind": "two_layer_relu", "width": 4}), (30,), 1, [7])
    x = torch.randn(1, 5, 30)
    pre = x[0] @ model.weight[0].T + model.bias[0]
    expected = (torch.relu(pre) * model.second[0]).sum(-1)
    assert torch.allclose(model(x)[0], expected, atol=1e-6)


def test_two_layer_fine_head_has_width_neurons_per_output():
    model = build_learner(_spec({"kind": "two_layer_relu", "width": 5}), (30,), 4, [0])
    assert model.first_layer().shape == (1, 20, 30)
    assert model(torch.randn(1, 3, 30)).shape == (1, 3, 4)
    assert model.neuron_classes().tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5


@pytest.mark.parametrize("learner,in_shape", [
    ({"kind": "two_layer_relu", "width": 8}, (30,)),
    ({"kind": "mlp", "widths": [16, 8]}, (30,)),
    ({"kind": "cnn", "channels": [4, 8], "hidden": 16}, (1, 8, 8)),
])
def test_batched_seeds_equal_separate_models(learner, in_shape):
    data = {"kind": "image"} if len(in_shape) == 3 else None
    spec = _spec(learner, data)
    batched = build_learner(spec, in_shape, 3, [4, 5])
    x = torch.rand(2, 6, *in_shape)
    out = batched(x)
    assert out.shape == (2, 6, 3)
    for s, seed in enumerate([4, 5]):
        alone = build_learner(spec, in_shape, 3, [seed])
        for p_b, p_a in zip(batched.parameters(), alone.parameters()):
            assert torch.equal(p_b[s], p_a[0])
        assert torch.allclose(alone(x[s:s + 1])[0], out[s], atol=1e-5)


def test_forward_accepts_extra_leading_dims_after_the_seed_dim():
    model = build_learner(_spec({"kind": "mlp", "widths": [8]}), (30,), 1, [0, 1])
    x = torch.randn(2, 3, 4, 30)  # (S, restarts, N, d)
    out = model(x)
    assert out.shape == (2, 3, 4)
    assert torch.allclose(out[:, 1], model(x[:, 1]), atol=1e-6)


def test_wrong_seed_dim_is_rejected():
    model = build_learner(_spec({"kind": "two_layer_relu"}), (30,), 1, [0, 1])
    with pytest.raises(ValueError, match="seed dim"):
        model(torch.randn(3, 4, 30))
