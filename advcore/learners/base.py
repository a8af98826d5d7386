"""What every learner is: a torch Module whose parameters carry a leading seed dim S.

S seeds train as one batched computation: forward maps x of shape (S, *lead, *in_shape) to
logits (S, *lead) for a binary head or (S, *lead, C) otherwise, and every seed's parameters are
drawn from that seed's own generator, so a batch of seeds equals the same seeds run one by one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advcore.device import generator


def seeded_normal(seeds: list[int], shape: tuple[int, ...], std: float, purpose: str) -> torch.Tensor:
    """(S, *shape) with seed s's slice drawn from its own generator: batching never changes it."""
    return torch.stack([torch.randn(shape, generator=generator(s, purpose)) * std for s in seeds])


class BatchedModel(nn.Module):
    """Base class: subclasses set `in_shape`, `n_outputs`, `n_seeds` and implement `logits`."""

    def __init__(self, in_shape: tuple[int, ...], n_outputs: int, seeds: list[int]) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.n_outputs = n_outputs
        self.seeds = list(seeds)
        self.n_seeds = len(seeds)
        self.in_features = math.prod(self.in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[1: x.dim() - len(self.in_shape)]
        if x.shape[0] != self.n_seeds:
            raise ValueError(f"expected a leading seed dim of {self.n_seeds}, got shape {tuple(x.shape)}")
        out = self.logits(x.reshape(self.n_seeds, -1, *self.in_shape))  # (S, L, C)
        out = out.reshape(self.n_seeds, *lead, self.n_outputs)
        return out.squeeze(-1) if self.n_outputs == 1 else out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, L, *in_shape) -> (S, L, n_outputs)."""
        raise NotImplementedError

    @classmethod
    def cost(cls, spec, in_shape: tuple[int, ...], n_outputs: int):
        """advcore.cost.ModelCost of this learner per seed and example, from its spec alone
        (every learner implements it next to its forward pass; advcore.cost composes them)."""
        raise NotImplementedError(f"learner {cls.__name__} has no cost function")

    def first_layer(self) -> torch.Tensor:
        """(S, R, D) first-layer weight vectors (D = prod(in_shape) where they live in input space)."""
        raise NotImplementedError

    def neuron_labels(self) -> list[str]:
        return [str(r) for r in range(self.first_layer().shape[1])]

    def neuron_classes(self) -> torch.Tensor | None:
        """(R,) output/class each first-layer neuron feeds, or None when neurons are shared.
        Measurements use it for per-class correlations (max over that class's neurons)."""
        return None
