"""The two-layer smoothed-ReLU patch CNN of science.md §B, batched over seeds.

F_i(X) = sum_{r<=m} sum_{p<=P} sReLU(<w_{i,r}, x_p>), i in [k]: m filters per class, shared
over patches, second layer fixed at 1. The smoothed ReLU is polynomial (z^q / (q rho^(q-1)))
below the knee rho and linear above it. That shape is what makes the feature race of the paper
winner-take-all: while correlations are small, a feature's growth rate scales with
(sum over its patches of strength^q) * correlation^(q-1), so the feature with the larger
sum of strength^q (the dense non-robust one, under the paper's assumptions) runs away first.

Weights carry a leading seed dim: w (S, k, m, d). Each seed's slice is drawn from its own
generator, so S batched seeds equal S separate runs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advcore.cost import FLOAT, Factor, ModelCost
from advcore.learners.base import BatchedModel, seeded_normal


def smoothed_relu(z: torch.Tensor, q: float, rho: float) -> torch.Tensor:
    """0 for z <= 0, z^q / (q rho^(q-1)) on (0, rho], z - (1 - 1/q) rho above; C^1 everywhere.

    The polynomial piece is evaluated on z clamped into [0, rho], so the branch `where` does
    not take stays finite and contributes an exact zero gradient (no inf/nan)."""
    knee = z.clamp(min=0.0, max=rho)
    return torch.where(z > rho, z - (1.0 - 1.0 / q) * rho, knee.pow(q) / (q * rho ** (q - 1)))


class PatchCNN(BatchedModel):
    def __init__(self, spec, in_shape: tuple[int, ...], n_outputs: int, seeds: list[int]):
        super().__init__(in_shape, n_outputs, seeds)
        if len(self.in_shape) != 2:
            raise ValueError(f"patch_cnn needs patch inputs (P, d), got in_shape {self.in_shape}")
        if n_outputs < 2:
            raise ValueError("patch_cnn is a k-class model (one output per class)")
        self.q, self.rho = float(spec.q), float(spec.rho)
        self.max_l1 = None if spec.max_filter_l1 is None else float(spec.max_filter_l1)
        self.k, self.m, self.d = n_outputs, spec.width, self.in_shape[1]
        std = spec.init_scale / math.sqrt(self.d)  # w ~ N(0, I/d) * init_scale
        self.w = nn.Parameter(seeded_normal(seeds, (self.k, self.m, self.d), std, "init/w"))  # (S, k, m, d)

    @classmethod
    def cost(cls, spec, in_shape, n_outputs: int) -> ModelCost:
        """One (L*P, d) x (d, k*m) product; the smoothed ReLU's pieces (clamp, power, branch
        mask, both branches) over (P, k*m): ~7 such tensors live in a backward pass."""
        P, d = in_shape
        km = n_outputs * spec.width
        forward = 2.0 * P * d * km
        return ModelCost(params=km * d, forward=forward, first=forward, representation=0,
                         rep_dim=0, backward_bytes=7 * P * km * FLOAT,
                         eval_bytes=5.5 * P * km * FLOAT,
                         n_neurons=km, first_dim=d, grad_copy=km * d,
                         factors=(Factor(("learner", "width"), spec.width, 16),))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, L, P, d) -> (S, L, k)."""
        S, L, P, d = x.shape
        filters = self.w.reshape(S, self.k * self.m, d).transpose(1, 2)  # (S, d, k*m)
        pre = torch.bmm(x.reshape(S, L * P, d), filters)  # (S, L*P, k*m)
        act = smoothed_relu(pre, self.q, self.rho).reshape(S, L, P, self.k, self.m)
        return act.sum(dim=(2, 4))  # (S, L, k)

    @torch.no_grad()
    def constrain_(self) -> None:
        """Project every filter onto the l1 ball of radius max_filter_l1 (Duchi et al. 2008):
        soft-threshold |w| by the theta that brings ||w||_1 to the radius; filters inside stay."""
        if self.max_l1 is None:
            return
        w = self.w.data  # (S, k, m, d)
        mag = w.abs()
        srt = mag.sort(dim=-1, descending=True).values
        excess = srt.cumsum(-1) - self.max_l1  # (S, k, m, d)
        idx = torch.arange(1, self.d + 1, device=w.device, dtype=w.dtype)
        support = (srt - excess / idx > 0).sum(-1, keepdim=True).clamp(min=1)  # (S, k, m, 1)
        theta = (excess.gather(-1, support - 1) / support).clamp(min=0.0)
        w.copy_(w.sign() * (mag - theta).clamp(min=0.0))

    def first_layer(self) -> torch.Tensor:
        """(S, k*m, d): filter r of class i is row i*m + r."""
        return self.w.reshape(self.n_seeds, self.k * self.m, self.d)

    def neuron_labels(self) -> list[str]:
        return [f"{i}.{r}" for i in range(self.k) for r in range(self.m)]

    def neuron_classes(self) -> torch.Tensor:
        """(k*m,) the class each filter feeds: corr/robust/i is a max over class i's filters."""
        return torch.arange(self.k).repeat_interleave(self.m)
