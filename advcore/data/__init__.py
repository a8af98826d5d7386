"""Data models: a registry of builders keyed by `data.kind` (base), and the `Dataset` they return.

Every builder takes `(data_spec, seed, device)` and returns one seed's `Dataset`; batched runs
stack S of them with `stack_seeds` so every tensor gains a leading seed dimension. Randomness
comes from a CPU generator derived from the seed (advcore.device.generator), so a dataset is the
same on every machine and the same whether its seed runs alone or in a batch.
"""

from __future__ import annotations

import torch

from advcore.data.base import BUILDERS, Builder, Dataset, register, stack_seeds

__all__ = ["BUILDERS", "Builder", "Dataset", "build_data", "register", "stack_seeds"]


def build_data(data_spec, seed: int, device: torch.device | str = "cpu") -> Dataset:
    """One seed's data set for `data_spec` (a resolved spec's `data`), on `device`."""
    _load_builders()
    try:
        builder = BUILDERS[data_spec.kind]
    except KeyError:
        raise NotImplementedError(f"no data builder for kind {data_spec.kind!r}") from None
    return builder(data_spec, seed).to(device)


def _load_builders() -> None:
    """Import the builder modules (each registers itself)."""
    from advcore.data import images, multi_cluster, patch, separated  # noqa: F401
