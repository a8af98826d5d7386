"""Real images (science.md §A real-data version): `digits` is bundled with scikit-learn;
mnist / fashion_mnist (IDX files) and cifar10 (the python pickle batches) are read from
ADVLAB_DATASET_DIR/<name>/ -- never downloaded at run time, and no torchvision.

Pixels are scaled to [0, 1] and kept as (C, H, W). `binary` maps classes to ±1 labels
(even_odd: even classes positive; first_half: the first half of the kept classes;
animals_vehicles: CIFAR-10's six animals positive, its four vehicles negative; or an explicit
[[positive classes], [negative classes]]); binary=None keeps the k-class task. Fine labels are
the class index within the kept classes (`kept_classes`). The features are the centred class
means (class mean minus the overall mean), the directions neuron cosines are measured against.
Subsampling (n_train / n_test) is seeded, so different seeds see different subsets.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch

from advcore.cost import FLOAT, DataCost, Factor, register_cost
from advcore.data.base import Dataset, register
from advcore.data.safe_pickle import load_data_pickle
from advcore.device import generator
from advcore.spec import IMAGE_SETS, data_size

_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
_CIFAR = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"]
FILES = {"mnist": _IDX, "fashion_mnist": _IDX, "cifar10": _CIFAR}  # expected under DIR/<name>/
CIFAR10_ANIMALS = [2, 3, 4, 5, 6, 7]  # bird cat deer dog frog horse
CIFAR10_VEHICLES = [0, 1, 8, 9]  # airplane automobile ship truck
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images[:, None].astype(np.float32) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    order = np.random.default_rng(0).permutation(len(x))  # one fixed train/test split
    test, train = order[:450], order[450:]
    return x[train], bunch.target[train], x[test], bunch.target[test]


MAX_IDX_BYTES = 256 * 2**20  # MNIST's largest file is 47 MB; a gzip bomb stops here


def _idx(path: Path, name: str) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x00 0x00 0x08 ndim), checked before it is trusted:
    the header's sizes must match the payload exactly. Only the header's size (plus one byte,
    to see a longer payload) is read, so neither a gzip bomb nor the cap itself is ever
    allocated: a 10 KB file costs 10 KB."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
            raise ValueError(f"data file {name} is not an IDX file of unsigned bytes")
        ndim = head[3]
        dims = f.read(4 * ndim)
        shape = [int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(len(dims) // 4)]
        size = int(np.prod(shape, dtype=np.int64))
        if 4 + 4 * ndim + size > MAX_IDX_BYTES:
            raise ValueError(f"data file {name} is larger than {MAX_IDX_BYTES >> 20} MB uncompressed")
        data = f.read(size + 1)
    if len(shape) != ndim or len(data) != size:
        got = f"more than {size}" if len(data) > size else str(len(data))
        raise ValueError(f"data file {name}: header says {shape}, payload has {got} bytes")
    return np.frombuffer(data, np.uint8).reshape(shape)


def dataset_root(name: str) -> Path:
    """ADVLAB_DATASET_DIR/<name>: the one place a data set's files are looked for."""
    base = os.environ.get("ADVLAB_DATASET_DIR")
    if not base:
        raise FileNotFoundError(
            f"data set {name!r} is read from local files, but ADVLAB_DATASET_DIR is unset: put "
            f"{', '.join(FILES[name])} (IDX files may be .gz) under $ADVLAB_DATASET_DIR/{name}/")
    return Path(base) / name


def _locate(name: str) -> list[Path]:
    """The expected files of `name` (IDX files may be gzipped), or a FileNotFoundError that
    names every missing file and where they are expected."""
    root = dataset_root(name)
    found, missing = [], []
    for rel in FILES[name]:
        options = [root / rel] + ([root / (rel + ".gz")] if name != "cifar10" else [])
        hit = next((p for p in options if p.exists()), None)
        (found if hit else missing).append(hit or rel)
    if missing:
        raise FileNotFoundError(
            f"data set {name!r} not found: missing {', '.join(map(str, missing))} under {root}/ "
            f"(expected {', '.join(FILES[name])}{' (optionally .gz)' if name != 'cifar10' else ''} "
            f"in $ADVLAB_DATASET_DIR/{name}/; ADVLAB_DATASET_DIR={os.environ['ADVLAB_DATASET_DIR']})")
    return found


def _cifar_batch(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: {b"data": uint8 (N, 3072), b"labels": N ints in 0..9}.
    Read as data only (advcore.data.safe_pickle): a crafted batch file cannot run code."""
    batch = load_data_pickle(path, name=name)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32 or not isinstance(labels, list) \
            or len(labels) != data.shape[0] \
            or not all(isinstance(c, int) and 0 <= c < 10 for c in labels):
        raise ValueError(f"data file {name} is not a CIFAR-10 batch: expected b'data' uint8 "
                         "(N, 3072) and b'labels', N ints in 0..9")
    x = data.reshape(-1, 3, 32, 32)  # rows are R, G, B planes
    return x, np.asarray(labels, dtype=np.int64)


@functools.lru_cache(maxsize=2)
def _from_disk(name: str, root: str):
    """(x_train uint8 (N, C, H, W), y_train, x_test, y_test); cached per (name, root) because
    every seed of a batched run asks for the same arrays."""
    paths = _locate(name)
    if name == "cifar10":
        parts = [_cifar_batch(p, f"{name}/{rel}") for p, rel in zip(paths, FILES[name])]
        return (np.concatenate([x for x, _ in parts[:5]]), np.concatenate([y for _, y in parts[:5]]),
                parts[5][0], parts[5][1])
    arrays = [_idx(p, f"{name}/{p.name}") for p in paths]
    return arrays[0][:, None], arrays[1].astype(np.int64), arrays[2][:, None], arrays[3].astype(np.int64)


def kept_classes(spec) -> list[int]:
    """Original class ids kept by an ImageData spec, in fine-label order."""
    if isinstance(spec.binary, list):  # explicit pairs restrict the classes to those named
        return sorted(set(spec.binary[0]) | set(spec.binary[1]))
    return sorted(spec.classes) if spec.classes else list(range(10))


def _positive(spec, classes: list[int]) -> list[int] | None:
    """J+ as original class ids, or None for a k-class task."""
    if spec.binary is None:
        return None
    if spec.binary == "even_odd":
        positive = [c for c in classes if c % 2 == 0]
    elif spec.binary == "first_half":
        positive = classes[: len(classes) // 2]
    elif spec.binary == "animals_vehicles":
        positive = [c for c in classes if c in CIFAR10_ANIMALS]
    else:
        positive = list(spec.binary[0])
    if not positive or len(positive) == len(classes):
        raise ValueError(f"binary map {spec.binary!r} leaves one side empty for classes {classes}")
    return positive


def _subsample(x, y, n, gen):
    if n is None or n >= len(x):
        return x, y
    keep = torch.randperm(len(x), generator=gen)[:n]
    return x[keep], y[keep]


def _pixels(x: np.ndarray) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] arrays -> float32 tensor in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


@register("image")
def build_image(spec, seed: int) -> Dataset:
    if spec.dataset == "digits":
        x_tr, y_tr, x_te, y_te = _digits()
    else:
        x_tr, y_tr, x_te, y_te = _from_disk(spec.dataset, str(dataset_root(spec.dataset)))
    classes = kept_classes(spec)
    positive = _positive(spec, classes)
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[classes] = torch.arange(len(classes))
    gen = generator(seed, "data")
    out = []
    for x, y, n in ((x_tr, y_tr, spec.n_train), (x_te, y_te, spec.n_test)):
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        mask = remap[y] >= 0
        idx, fine = _subsample(torch.nonzero(mask).squeeze(1), remap[y[mask]], n, gen)
        out.append((_pixels(x[idx.numpy()]), fine))  # only the kept images become float
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


@register_cost("image")
def cost(spec) -> DataCost:
    """Sizes from the standard files (advcore.spec.data_size). Per seed: the kept images'
    uint8 copy and float conversion; files read from disk stay cached as uint8 (host memory),
    read once through an extra concatenated copy."""
    n_train, n_test, D, _ = data_size(spec)
    full_train, full_test, shape = IMAGE_SETS[spec.dataset]
    raw = (full_train + full_test) * D  # uint8
    if spec.dataset == "digits":  # scikit-learn's float64 arrays, freed after the build
        host, read = 0, 1797 * D * 8 * 3
    else:
        host, read = raw, raw
    n_classes = len(kept_classes(spec))
    binary = spec.binary is not None
    return DataCost(
        n_train=n_train, n_test=n_test, in_shape=shape, n_classes=n_classes, binary=binary,
        has_readout=binary, features={"cluster": (n_classes, D)},
        build_bytes=max(n_train, n_test) * D * (1 + 2 * FLOAT) + read, host_bytes=host,
        n_loc=("data", "n_train"), size=(Factor(("data", "dataset"), D, 3072),))
