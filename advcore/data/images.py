"""Real images (science.md §A real-data version): `digits` is bundled with scikit-learn;
mnist / fashion_mnist / cifar10 are read from the standard files under ADVLAB_DATASET_DIR.

Pixels are scaled to [0, 1] and kept as (C, H, W). `binary` maps classes to ±1 labels
(even_odd: even digits positive; first_half: the first half of the kept classes; or an explicit
[[positive classes], [negative classes]]); binary=None keeps the k-class task. Fine labels are
the class index within the kept classes. The features are the centred class means (class mean
minus the overall mean), the directions neuron cosines are measured against.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from advcore.data import Dataset, register
from advcore.device import generator

_FILES = {
    "mnist": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    "cifar10": ["cifar-10-batches-py/data_batch_1..5", "cifar-10-batches-py/test_batch"],
}
_FILES["fashion_mnist"] = _FILES["mnist"]


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images[:, None].astype(np.float32) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    order = np.random.default_rng(0).permutation(len(x))  # one fixed train/test split
    test, train = order[:450], order[450:]
    return x[train], bunch.target[train], x[test], bunch.target[test]


def _idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / (name + ".gz")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


def _from_disk(name: str):
    root = Path(os.environ.get("ADVLAB_DATASET_DIR", "")) / name
    try:
        if name == "cifar10":
            batches = [root / "cifar-10-batches-py" / f"data_batch_{i}" for i in range(1, 6)]
            test = root / "cifar-10-batches-py" / "test_batch"
            parts = []
            for p in [*batches, test]:
                with open(p, "rb") as f:
                    parts.append(pickle.load(f, encoding="bytes"))
            xs = [np.asarray(b[b"data"]).reshape(-1, 3, 32, 32) / 255.0 for b in parts]
            ys = [np.asarray(b[b"labels"]) for b in parts]
            return (np.concatenate(xs[:5]).astype(np.float32), np.concatenate(ys[:5]),
                    xs[5].astype(np.float32), ys[5])
        arrays = [_idx(_find(root, f)) for f in _FILES[name]]
        return (arrays[0][:, None] / np.float32(255), arrays[1],
                arrays[2][:, None] / np.float32(255), arrays[3])
    except FileNotFoundError:
        raise FileNotFoundError(
            f"data set {name!r} not found: expected {', '.join(_FILES[name])} (optionally .gz) "
            f"under $ADVLAB_DATASET_DIR/{name}/ (ADVLAB_DATASET_DIR="
            f"{os.environ.get('ADVLAB_DATASET_DIR', '<unset>')})") from None


def _positive(spec, classes: list[int]) -> list[int] | None:
    """J+ as original class ids, or None for a k-class task."""
    if spec.binary is None:
        return None
    if spec.binary == "even_odd":
        return [c for c in classes if c % 2 == 0]
    if spec.binary == "first_half":
        return classes[: len(classes) // 2]
    return list(spec.binary[0])


def _subsample(x, y, n, gen):
    if n is None or n >= len(x):
        return x, y
    keep = torch.randperm(len(x), generator=gen)[:n]
    return x[keep], y[keep]


@register("image")
def build_image(spec, seed: int) -> Dataset:
    x_tr, y_tr, x_te, y_te = _digits() if spec.dataset == "digits" else _from_disk(spec.dataset)
    classes = sorted(spec.classes) if spec.classes else list(range(10))
    if isinstance(spec.binary, list):  # explicit pairs restrict the classes to those named
        classes = sorted(set(spec.binary[0]) | set(spec.binary[1]))
    positive = _positive(spec, classes)
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[classes] = torch.arange(len(classes))
    gen = generator(seed, "data")
    out = []
    for x, y, n in ((x_tr, y_tr, spec.n_train), (x_te, y_te, spec.n_test)):
        x, y = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y), dtype=torch.long)
        mask = remap[y] >= 0
        x, fine = _subsample(x[mask], remap[y[mask]], n, gen)
        out.append((x.float(), fine))
    (x_train, f_train), (x_test, f_test) = out
    pos_idx = [classes.index(c) for c in positive] if positive is not None else None
    if pos_idx is not None:
        sign = -torch.ones(len(classes))
        sign[pos_idx] = 1.0
        y_train, y_test = sign[f_train], sign[f_test]
    else:
        y_train, y_test = f_train, f_test
    overall = x_train.mean(0)
    means = torch.stack([x_train[f_train == j].mean(0) - overall if (f_train == j).any()
                         else torch.zeros_like(overall) for j in range(len(classes))])
    return Dataset(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        y_train_fine=f_train, y_test_fine=f_test, positive_classes=pos_idx,
        features={"cluster": means}, attack_direction=None, feature_ndim=3, box=(0.0, 1.0),
        n_classes=len(classes),
    )
