"""The binary read-outs of a fine-label model (sum / argmax), their attacks' inputs (cluster-pair
directions, the data directions attack), the spec fields that choose them, and the spec's
deprecated spelling of fine labels."""

from __future__ import annotations

import math

import pytest
import torch

from advcore.attacks import robust_accuracy
from advcore.attacks.starts import cluster_pair_directions, start_directions
from advcore.cost import estimate
from advcore.measure import cliff_radius
from advcore.spec import FINE_LABELS_DEPRECATED, AttackSpec, parse_spec
from advcore.train import attack_kwargs, attacked_view, binary_readout, make_task

POSITIVE = (0, 1, 2)  # J+ of 6 classes


def test_argmax_readout_is_the_side_of_the_predicted_class_and_its_margin():
    logits = torch.randn(2, 500, 6, generator=torch.Generator().manual_seed(0))
    g = binary_readout(logits, POSITIVE, "argmax")  # (2, 500)
    side = torch.where(logits.argmax(-1) < 3, 1.0, -1.0)
    assert torch.equal(torch.sign(g), side)
    assert torch.allclose(g, logits[..., :3].amax(-1) - logits[..., 3:].amax(-1))


def test_sum_readout_is_the_signed_sum_of_the_class_logits():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    expected = logits[:, :3].sum(-1) - logits[:, 3:].sum(-1)
    assert torch.allclose(binary_readout(logits, POSITIVE, "sum"), expected)
    assert torch.allclose(binary_readout(logits, POSITIVE), expected)


def test_the_readouts_disagree_where_one_large_logit_outweighs_a_side():
    logits = torch.tensor([[5.0, 0.0, 0.0, 2.0, 2.0, 2.0]])  # predicts class 0 (J+)
    assert binary_readout(logits, POSITIVE, "argmax").item() == 3.0
    assert binary_readout(logits, POSITIVE, "sum").item() == -1.0


def _orthonormal_clusters(k: int = 6, d: int = 16):
    means = torch.eye(d)[:k] * 4.0  # (k, d): ||mu|| = 4
    labels = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    x = means[[0, 4]] + 0.1 * torch.randn(2, d, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1.0, -1.0])
    return means, labels, x, y


def test_cluster_pairs_are_unit_differences_to_every_opposite_cluster_nearest_first():
    means, labels, x, y = _orthonormal_clusters()
    pairs = cluster_pair_directions(x, y, means, labels, feature_ndim=1)  # (2, 3, 16)
    assert pairs.shape == (2, 3, 16)
    assert torch.allclose(pairs.norm(dim=-1), torch.ones(2, 3))
    units = means / 4.0
    # point 0 (cluster 0, J+): u_t - u_0 for t in J- = {3, 4, 5}, in order of <x, u_t>
    order = (x[0] @ units[3:].T).argsort(descending=True) + 3
    expected = (units[order] - units[0]) / math.sqrt(2)
    assert torch.allclose(pairs[0], expected, atol=1e-6)
    # point 1 (cluster 4, J-): every t in J+ = {0, 1, 2} appears once
    targets = {int(i) for i in ((pairs[1] * math.sqrt(2) + units[4]) @ units.T).argmax(-1)}
    assert targets == {0, 1, 2}
    assert cluster_pair_directions(x, y, means, labels, 1, limit=2).shape == (2, 2, 16)


def test_start_directions_add_the_pairs_only_when_asked():
    means, labels, x, y = _orthonormal_clusters()
    base = start_directions(x, y, feature_ndim=1, clusters=means, cluster_labels=labels)
    with_pairs = start_directions(x, y, feature_ndim=1, clusters=means, cluster_labels=labels,
                                  cluster_pairs=2)
    every = start_directions(x, y, feature_ndim=1, clusters=means, cluster_labels=labels,
                             cluster_pairs=None)
    assert (base.shape[1], with_pairs.shape[1], every.shape[1]) == (2, 4, 5)


def test_data_directions_attack_breaks_a_cluster_argmax_exactly_past_the_half_distance():
    """A nearest-mean classifier (logits <x, u_j>) read by argmax flips once a pair direction
    covers (<x, u_own> - <x, u_t>) / sqrt(2): the data directions attack finds it at radius
    ||mu|| / sqrt(2) for points at their means; the feature direction needs more."""
    means, labels, _, _ = _orthonormal_clusters()
    units = means / 4.0
    x = means.clone()  # every cluster's mean, one point each (6, 16)
    y = labels.clone()

    def model(inputs):
        return binary_readout(inputs @ units.T, POSITIVE, "argmax")

    half = 4.0 / math.sqrt(2)
    spec = AttackSpec(kind="feature_direction", directions="data", radii=[half * 0.98, half * 1.02])
    res = robust_accuracy(model, x, y, spec, feature_ndim=1, clusters=means,
                          cluster_labels=labels)
    assert res.accuracy.tolist() == [1.0, 0.0]


def _spec(**evaluation):
    return parse_spec({"data": {"kind": "multi_cluster", "d": 40, "k": 6, "n_train": 30,
                                "n_test": 30},
                       "training": {"labels": "fine"},
                       "evaluation": evaluation}).resolve()


def test_attacks_read_the_evaluation_readout_unless_they_name_their_own():
    from advcore.data import build_data, stack_seeds

    spec = _spec(readout="argmax")
    data = stack_seeds([build_data(spec.data, 0)])
    task = make_task(spec, data)
    assert task.readout == "argmax"
    logits = torch.randn(1, 30, 6, generator=torch.Generator().manual_seed(3))
    model = lambda x: logits  # noqa: E731
    for readout, expected in [("binary", "argmax"), ("argmax", "argmax"), ("sum", "sum")]:
        fn, y = attacked_view(model, task, AttackSpec(readout=readout), data.y_test, None)
        assert torch.equal(fn(data.x_test), binary_readout(logits, task.positive_classes,
                                                           expected))
    fn, y = attacked_view(model, task, AttackSpec(readout="fine"), data.y_test, data.y_test_fine)
    assert fn(data.x_test) is logits and y is data.y_test_fine
    # the nearest cluster pairs are apgd's starts only when the attacked read-out is argmax
    assert attack_kwargs(AttackSpec(kind="autoattack"), data, task)["cluster_pairs"]
    assert "cluster_pairs" not in attack_kwargs(AttackSpec(kind="autoattack", readout="sum"),
                                                data, task)


def test_attack_labels_name_an_explicit_readout():
    assert AttackSpec(kind="pgd").label == "pgd_l2"
    assert AttackSpec(kind="pgd", readout="argmax").label == "pgd_l2_argmax"
    assert AttackSpec(kind="autoattack", readout="sum").label == "autoattack_l2_sum"
    assert AttackSpec(kind="pgd", readout="fine").label == "pgd_l2_fine"
    assert AttackSpec(kind="feature_direction", directions="data").label == "data_directions"
    assert AttackSpec(kind="feature_direction", readout="sum").label == "feature_direction_sum"
    # the minimum over attacks never mixes read-outs
    assert [AttackSpec(readout=r).threat_label for r in ("binary", "sum", "argmax", "fine")] == [
        "min_l2", "min_l2_sum", "min_l2_argmax", "min_l2_fine"]
    with pytest.raises(ValueError, match="directions applies"):
        AttackSpec(kind="pgd", directions="data")


def test_argmax_pair_starts_are_priced():
    attack = {"kind": "autoattack", "radii": [1.0]}
    sum_cost = estimate(_spec(readout="sum", attacks=[attack])).flops
    argmax_cost = estimate(_spec(readout="argmax", attacks=[attack])).flops
    assert argmax_cost > sum_cost


def test_two_layer_relu_defaults_to_the_small_init_regime():
    spec = parse_spec({})
    assert spec.learner.init_scale == 0.1
    assert spec.evaluation.readout == "sum"


def test_mode_fine_labels_is_read_as_labels_fine_with_a_deprecation_warning():
    old = parse_spec({"training": {"mode": "fine_labels"}}).resolve()
    new = parse_spec({"training": {"labels": "fine"}}).resolve()
    assert (old.training.mode, old.training.labels) == ("standard", "fine")
    assert old.warnings == [FINE_LABELS_DEPRECATED] and new.warnings == []
    assert old.spec_hash() == new.spec_hash()  # the same science
    assert old.resolve().warnings == old.warnings  # resolving again adds nothing
    assert parse_spec(old.model_dump(mode="json")).resolve() == old  # stored form re-validates


def test_cliff_radius_interpolates_the_first_crossing():
    assert cliff_radius([10, 12, 14], [1.0, 0.5, 0.0]) == pytest.approx(12 + 0.4 / 0.5 * 2)
    assert cliff_radius([14, 10, 12], [0.0, 1.0, 0.1]) == 12.0
    assert cliff_radius([1, 2], [1.0, 0.9]) is None
    assert cliff_radius([1, 2], [0.05, 0.0]) == 1.0
