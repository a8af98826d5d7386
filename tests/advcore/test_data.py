"""Data models: geometry, labels, seeding, stacking; real-image loading."""

from __future__ import annotations

import math

import pytest
import torch

from advcore.data import build_data, stack_seeds
from advcore.spec import ImageData, MultiClusterData, SeparatedData
from devtools.image_files import write_idx


def test_multi_cluster_means_are_orthogonal_with_norm_sqrt_d():
    data = build_data(MultiClusterData(d=60, k=6, n_train=120, n_test=60), seed=3)
    means = data.features["cluster"]  # (k, d)
    gram = means @ means.T
    assert torch.allclose(gram, 60 * torch.eye(6), atol=1e-3)


def test_multi_cluster_labels_follow_positive_clusters_and_are_balanced():
    spec = MultiClusterData(d=40, k=4, n_train=400, n_test=100, positive_clusters=[1, 3])
    data = build_data(spec, seed=0)
    expected = torch.where((data.y_train_fine == 1) | (data.y_train_fine == 3), 1.0, -1.0)
    assert torch.equal(data.y_train, expected)
    assert torch.bincount(data.y_train_fine).tolist() == [100, 100, 100, 100]
    assert data.positive_classes == [1, 3] and data.n_classes == 4 and data.box is None


def test_multi_cluster_points_sit_at_their_mean_plus_sigma_noise():
    data = build_data(MultiClusterData(d=200, k=4, sigma=0.5, n_train=2000, n_test=10), seed=1)
    noise = data.x_train - data.features["cluster"][data.y_train_fine]
    assert noise.std().item() == pytest.approx(0.5, rel=0.02)


def test_multi_cluster_attack_direction_is_the_unit_averaging_direction():
    data = build_data(MultiClusterData(d=50, k=4, n_train=8, n_test=8), seed=0)
    means = data.features["cluster"]
    expected = means[0] + means[1] - means[2] - means[3]
    assert torch.allclose(data.attack_direction, expected / expected.norm(), atol=1e-6)
    # every cluster mean sits exactly sqrt(d/k) from the hyperplane orthogonal to the direction
    signal = (means[data.y_train_fine] @ data.attack_direction) * data.y_train
    assert torch.allclose(signal, torch.full_like(signal, math.sqrt(50 / 4)), atol=1e-4)


def test_same_seed_same_data_and_different_seed_different_data():
    spec = MultiClusterData(d=20, k=4, n_train=50, n_test=20)
    a, b, c = build_data(spec, 5), build_data(spec, 5), build_data(spec, 6)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.allclose(a.x_train, c.x_train)


def test_stack_seeds_adds_a_leading_seed_dim_to_every_tensor():
    spec = MultiClusterData(d=20, k=4, n_train=50, n_test=20)
    stacked = stack_seeds([build_data(spec, s) for s in (0, 1, 2)])
    assert stacked.x_train.shape == (3, 50, 20) and stacked.y_test_fine.shape == (3, 20)
    assert stacked.features["cluster"].shape == (3, 4, 20)
    assert stacked.attack_direction.shape == (3, 20)
    assert stacked.in_shape == (20,) and stacked.stacked
    assert torch.equal(stacked.x_train[1], build_data(spec, 1).x_train)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("variant", ["linear", "manifold"])
def test_separated_classes_are_at_least_two_eps_apart(norm, variant):
    spec = SeparatedData(d=10, n_train=300, n_test=300, eps=0.05, norm=norm, variant=variant)
    data = build_data(spec, seed=0)
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    pos, neg = x[y > 0], x[y < 0]
    p = float("inf") if norm == "linf" else 2.0
    assert torch.cdist(pos, neg, p=p).min().item() >= 2 * 0.05 - 1e-6
    assert 0.25 < (y > 0).float().mean().item() < 0.75  # both classes present
    assert x.min() >= 0 and x.max() <= 1


def test_digits_even_odd_is_in_unit_box_with_even_digits_positive():
    data = build_data(ImageData(dataset="digits", binary="even_odd"), seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8) and data.feature_ndim == 3
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1 and data.box == (0.0, 1.0)
    assert data.x_train.shape[0] + data.x_test.shape[0] == 1797
    even = data.y_train_fine % 2 == 0
    assert torch.equal(data.y_train, torch.where(even, 1.0, -1.0))
    assert data.features["cluster"].shape == (10, 1, 8, 8)


def test_digits_explicit_pairs_keep_only_those_classes_and_subsample_by_seed():
    spec = ImageData(dataset="digits", binary=[[3], [8]], n_train=100, n_test=50)
    a, b, c = build_data(spec, 0), build_data(spec, 0), build_data(spec, 1)
    assert a.x_train.shape[0] == 100 and a.x_test.shape[0] == 50
    assert set(a.y_train_fine.tolist()) == {0, 1} and a.positive_classes == [0]
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_digits_without_binary_map_is_a_k_class_task():
    data = build_data(ImageData(dataset="digits", binary=None, classes=[0, 1, 2]), seed=0)
    assert data.y_train.dtype == torch.long and not data.binary and data.n_classes == 3


def test_missing_mnist_files_raise_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        build_data(ImageData(dataset="mnist"), seed=0)


def test_mnist_idx_files_are_read_from_the_dataset_dir(tmp_path, monkeypatch):
    import numpy as np

    root = tmp_path / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte", np.arange(40) % 10)
    write_idx(root / "t10k-images-idx3-ubyte", np.full((20, 28, 28), 255))
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(20) % 10)
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    data = build_data(ImageData(dataset="mnist", binary="even_odd"), seed=0)
    assert data.x_train.shape == (40, 1, 28, 28) and data.x_test.shape == (20, 1, 28, 28)
    assert data.x_test.max().item() == 1.0 and data.x_train.min() >= 0
    assert torch.equal(data.y_test_fine, torch.arange(20) % 10)
