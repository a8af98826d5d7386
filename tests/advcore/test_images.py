"""Real-image data sets: CIFAR-10 pickle batches, Fashion-MNIST IDX files, binary presets, class
subsets, seeded subsampling, and the clear error when files are absent (through the runner)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from advcore.data import build_data
from advcore.run import run_experiment
from advcore.spec import ImageData, parse_spec
from devtools.image_files import write_cifar_batches, write_idx


def test_cifar10_pickle_batches_load_as_unit_range_chw_images(tmp_path, monkeypatch):
    folder = write_cifar_batches(tmp_path)
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    data = build_data(ImageData(dataset="cifar10", binary=None), seed=0)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (30, 3, 32, 32)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1 and data.box == (0.0, 1.0)
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)[b"data"][1].reshape(3, 32, 32)  # row layout: R plane, G, B
    assert torch.allclose(data.x_train[1], torch.tensor(first, dtype=torch.float32) / 255)
    assert torch.equal(data.y_train[:20], torch.arange(20) % 10)


def test_cifar10_animals_vs_vehicles_labels_animals_positive(tmp_path, monkeypatch):
    write_cifar_batches(tmp_path)
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    data = build_data(ImageData(dataset="cifar10", binary="animals_vehicles"), seed=0)
    animal = torch.isin(data.y_train_fine, torch.tensor([2, 3, 4, 5, 6, 7]))
    assert torch.equal(data.y_train, torch.where(animal, 1.0, -1.0))
    assert data.positive_classes == [2, 3, 4, 5, 6, 7] and data.n_classes == 10


def test_fashion_mnist_reads_gzipped_idx_files(tmp_path, monkeypatch):
    import gzip

    root = tmp_path / "fashion_mnist"
    root.mkdir()
    arrays = {"train-images-idx3-ubyte": np.full((12, 28, 28), 51), "train-labels-idx1-ubyte": np.arange(12) % 10,
              "t10k-images-idx3-ubyte": np.zeros((5, 28, 28)), "t10k-labels-idx1-ubyte": np.arange(5)}
    for name, array in arrays.items():
        write_idx(root / name, array)
        (root / (name + ".gz")).write_bytes(gzip.compress((root / name).read_bytes()))
        (root / name).unlink()
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    data = build_data(ImageData(dataset="fashion_mnist", binary="first_half"), seed=0)
    assert data.x_train.shape == (12, 1, 28, 28) and torch.allclose(data.x_train, torch.full_like(data.x_train, 0.2))
    assert torch.equal(data.y_train, torch.where(data.y_train_fine < 5, 1.0, -1.0))


def test_class_subset_keeps_only_those_classes_as_a_k_class_task():
    data = build_data(ImageData(dataset="digits", classes=[7, 3, 1], binary=None), seed=0)
    assert data.n_classes == 3 and set(data.y_train.unique().tolist()) == {0, 1, 2}
    assert data.features["cluster"].shape == (3, 1, 8, 8)


def test_subsampling_is_seeded_same_seed_same_subset_other_seed_other_subset():
    spec = ImageData(dataset="digits", n_train=200, n_test=50)
    a, b, c = (build_data(spec, seed=s) for s in (0, 0, 1))
    assert a.x_train.shape == (200, 1, 8, 8) and a.x_test.shape == (50, 1, 8, 8)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_binary_map_with_an_empty_side_is_rejected():
    with pytest.raises(ValueError, match="one side empty"):
        build_data(ImageData(dataset="digits", classes=[0, 2, 4], binary="even_odd"), seed=0)


@pytest.mark.parametrize("dataset,expected", [("mnist", "t10k-labels-idx1-ubyte"),
                                              ("cifar10", "cifar-10-batches-py/data_batch_1")])
def test_spec_naming_absent_files_fails_through_the_runner_with_the_expected_files(
        tmp_path, monkeypatch, dataset, expected):
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    spec = parse_spec({"data": {"kind": "image", "dataset": dataset}, "learner": {"kind": "mlp"},
                       "training": {"epochs": 1}})
    with pytest.raises(FileNotFoundError) as info:
        run_experiment(spec, device="cpu")
    message = str(info.value)
    assert expected in message and "ADVLAB_DATASET_DIR" in message and str(tmp_path) in message


def test_unset_dataset_dir_names_the_variable(monkeypatch):
    monkeypatch.delenv("ADVLAB_DATASET_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="ADVLAB_DATASET_DIR is unset"):
        build_data(ImageData(dataset="fashion_mnist"), seed=0)
