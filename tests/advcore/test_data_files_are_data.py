"""Data files are untrusted input: a crafted CIFAR-10 batch or IDX file must fail with an error
naming the file, and nothing in it may run."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from advcore.data import build_data
from advcore.data.safe_pickle import UnsafePickle, load_data_pickle
from advcore.run import run_experiment
from advcore.spec import ImageData, parse_spec

from devtools.image_files import write_cifar_batches, write_idx


class _RunsACommand:
    """Unpickling this calls os.system: what a malicious data file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(folder, name, payload, protocol):
    with open(folder / name, "wb") as f:
        pickle.dump(payload, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_crafted_cifar_batch_runs_nothing_and_the_job_fails_naming_the_file(
        tmp_path, monkeypatch, protocol):
    folder = write_cifar_batches(tmp_path / "data")
    marker = tmp_path / "pwned"
    _plant(folder, "data_batch_1", {b"data": _RunsACommand(marker), b"labels": [0]}, protocol)
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path / "data"))
    spec = parse_spec({"data": {"kind": "image", "dataset": "cifar10"}, "learner": {"kind": "mlp"},
                       "training": {"epochs": 1}})
    with pytest.raises(UnsafePickle) as info:
        run_experiment(spec, device="cpu")
    assert not marker.exists()
    message = str(info.value)
    assert "cifar10/cifar-10-batches-py/data_batch_1" in message and "os" in message
    assert str(tmp_path) not in message


def test_object_arrays_are_refused_even_when_their_elements_are_harmless(tmp_path):
    path = tmp_path / "batch"
    _plant(tmp_path, "batch", {b"data": np.array([1, "x"], dtype=object)}, 4)
    with pytest.raises(UnsafePickle, match="array of Python objects"):
        load_data_pickle(path, name="batch")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_cifar_layout_loads_under_every_pickle_protocol(tmp_path, monkeypatch, protocol):
    folder = write_cifar_batches(tmp_path)
    rng = np.random.default_rng(1)
    for name in ["data_batch_1", "test_batch"]:
        data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        _plant(folder, name, {b"batch_label": b"batch", b"data": data,
                              b"labels": [int(j) for j in range(10)],
                              b"filenames": [b"f%d.png" % j for j in range(10)]}, protocol)
    from advcore.data import images

    images._from_disk.cache_clear()
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    data = build_data(ImageData(dataset="cifar10", binary=None), seed=0)
    assert data.x_test.shape[-3:] == (3, 32, 32) and data.x_test.shape[0] == 10


def test_a_batch_with_the_wrong_layout_is_refused_naming_the_file(tmp_path, monkeypatch):
    folder = write_cifar_batches(tmp_path)
    _plant(folder, "test_batch", {b"data": np.zeros((3, 5), np.uint8), b"labels": [0, 1, 2]}, 4)
    from advcore.data import images

    images._from_disk.cache_clear()
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="cifar-10-batches-py/test_batch is not a CIFAR-10 batch"):
        build_data(ImageData(dataset="cifar10", binary=None), seed=0)


def test_an_idx_file_whose_header_lies_about_its_size_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "mnist"
    root.mkdir()
    for name, shape in [("train-images-idx3-ubyte", (20, 28, 28)), ("train-labels-idx1-ubyte", (20,)),
                        ("t10k-images-idx3-ubyte", (10, 28, 28)), ("t10k-labels-idx1-ubyte", (10,))]:
        write_idx(root / name, np.zeros(shape, np.uint8))
    bad = root / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-7])  # payload shorter than the header's 10x28x28
    from advcore.data import images

    images._from_disk.cache_clear()
    monkeypatch.setenv("ADVLAB_DATASET_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="mnist/t10k-images-idx3-ubyte: header says"):
        build_data(ImageData(dataset="mnist", binary=None), seed=0)


def test_a_gzip_bomb_stops_at_the_size_cap(tmp_path, monkeypatch):
    from advcore.data import images

    monkeypatch.setattr(images, "MAX_IDX_BYTES", 1 << 16)
    path = tmp_path / "big-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (1 << 20).to_bytes(4, "big") + bytes(1 << 20))
    with pytest.raises(ValueError, match="larger than"):
        images._idx(path, "mnist/big-idx1-ubyte.gz")
