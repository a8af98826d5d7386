"""Image data sets in their standard file formats, written from random pixels: the CIFAR-10
python pickle batches and the IDX files of MNIST / Fashion-MNIST. The real loaders read them,
so tests and benchmarks exercise the file-reading path without a download."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar_batches(root: Path, n_per_batch: int = 20, n_test: int = 30) -> Path:
    """Five training batches and a test batch under root/cifar10/cifar-10-batches-py; labels
    cycle through the 10 classes, and the first image of the first batch is all 255."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[0] = 255 if i == 0 else data[0]
        batch = {b"data": data, b"labels": [int(j) for j in (np.arange(n) + i) % 10]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def write_idx(path: Path, array) -> None:
    """One IDX file (unsigned bytes) holding `array`."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fake_image_files(root: Path, dataset: str, n_train: int, n_test: int) -> None:
    """Random images with balanced labels under root/<dataset>/ (pickle batches for cifar10,
    IDX for mnist / fashion_mnist)."""
    if dataset == "cifar10":
        write_cifar_batches(root, n_per_batch=-(-n_train // 5), n_test=n_test)
        return
    rng = np.random.default_rng(0)
    (root / dataset).mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / dataset / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / dataset / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
