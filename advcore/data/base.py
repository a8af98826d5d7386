"""The `Dataset` every data builder returns, and the registry the builder modules join."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable

import torch


@dataclass
class Dataset:
    x_train: torch.Tensor  # (N, *F) or (S, N, *F) once stacked
    y_train: torch.Tensor  # binary: float in {-1, +1}; k-class: long class index
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_train_fine: torch.Tensor | None = None  # long cluster/class index (fine labels)
    y_test_fine: torch.Tensor | None = None
    positive_classes: list[int] | None = None  # J+: fine classes read out as y = +1
    features: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (k, *F)
    attack_direction: torch.Tensor | None = None  # (*F) unit norm; attack = x - r * y * dir
    feature_ndim: int = 1  # 1 vectors, 2 patches (P, d), 3 images (C, H, W)
    box: tuple[float, float] | None = None  # valid input range; None for synthetic data
    n_classes: int | None = None  # number of fine classes (outputs of a fine-label learner)
    stacked: bool = False  # True once a leading seed dim was added

    @property
    def binary(self) -> bool:
        """Binary ±1 main labels (else the main task is k-class)."""
        return self.y_train.is_floating_point()

    @property
    def in_shape(self) -> tuple[int, ...]:
        start = 2 if self.stacked else 1
        return tuple(self.x_train.shape[start:])

    def to(self, device: torch.device | str) -> "Dataset":
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device)
            elif f.name == "features":
                moved[f.name] = {k: v.to(device) for k, v in value.items()}
        return replace(self, **moved)


Builder = Callable[..., Dataset]
BUILDERS: dict[str, Builder] = {}


def register(kind: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        return fn

    return wrap


def stack_seeds(datasets: list[Dataset]) -> Dataset:
    """Stack per-seed data sets along a new leading seed dim S (shapes must agree)."""
    first = datasets[0]
    stacked = {}
    for f in fields(first):
        value = getattr(first, f.name)
        if isinstance(value, torch.Tensor):
            stacked[f.name] = torch.stack([getattr(d, f.name) for d in datasets])
        elif f.name == "features":
            stacked[f.name] = {k: torch.stack([d.features[k] for d in datasets]) for k in value}
    return replace(first, **stacked, stacked=True)
