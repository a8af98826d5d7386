"""A brief full-batch fit of a small model that is then attacked: the benchmarks' and the
attack oracle tests' victims."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def fit_frozen(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float,
               perturbed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> nn.Module:
    """`steps` full-batch Adam steps on the cross-entropy of (x, y), each on perturbed(x) when
    given (adversarial training); the model comes back in eval mode with its parameters frozen
    (attacks need gradients for the inputs only)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        batch = x if perturbed is None else perturbed(x)
        opt.zero_grad()
        nn.functional.cross_entropy(model(batch), y).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
