"""The two-layer ReLU network of the feature-averaging paper (science.md §A).

Binary head: f(x) = sum_r a_r ReLU(<w_r, x> + b_r) with a_r = +1/m for the first ceil(m/2)
neurons and -1/m for the rest (m = width), fixed unless `train_second_layer`.
Fine labels (C outputs): `width` neurons per output, F_j(x) = (1/m) sum_r ReLU(<w_{j,r}, x> + b_{j,r});
the binary read-out is sum_{J+} F_j - sum_{J-} F_j (advcore.train.binary_readout).
Init: w ~ N(0, I/d) * init_scale, b ~ N(0, 1/d^2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advcore.cost import FLOAT, Factor, ModelCost
from advcore.learners.base import BatchedModel, seeded_normal


class TwoLayerReLU(BatchedModel):
    def __init__(self, spec, in_shape, n_outputs: int, seeds: list[int]) -> None:
        super().__init__(in_shape, n_outputs, seeds)
        d, m = self.in_features, spec.width
        self.per_output = m
        n_neurons = m if n_outputs == 1 else m * n_outputs
        self.weight = nn.Parameter(seeded_normal(seeds, (n_neurons, d), spec.init_scale / math.sqrt(d), "init/w"))  # (S, R, d)
        if spec.bias:
            self.bias = nn.Parameter(seeded_normal(seeds, (n_neurons,), 1.0 / d, "init/b"))  # (S, R)
        else:
            self.register_parameter("bias", None)
        if n_outputs == 1:
            n_pos = (m + 1) // 2
            a = torch.cat([torch.full((n_pos,), 1.0 / m), torch.full((m - n_pos,), -1.0 / m)])
        else:
            a = torch.full((n_neurons,), 1.0 / m)
        a = a.expand(self.n_seeds, n_neurons).clone()  # (S, R)
        if spec.train_second_layer:
            self.second = nn.Parameter(a)
        else:
            self.register_buffer("second", a)

    @classmethod
    def cost(cls, spec, in_shape, n_outputs: int) -> ModelCost:
        """One (R, d) matrix product; pre-activations, ReLU and the weighted sum per neuron."""
        d = math.prod(in_shape)
        R = spec.width if n_outputs == 1 else spec.width * n_outputs
        forward = 2.0 * R * d
        params = R * d + R * (1 + spec.bias)  # + the second layer (a buffer when not trained)
        return ModelCost(params=params, forward=forward, first=forward, representation=0,
                         rep_dim=0, backward_bytes=3 * R * FLOAT, eval_bytes=3 * R * FLOAT,
                         n_neurons=R, first_dim=d, grad_copy=R * d,
                         factors=(Factor(("learner", "width"), spec.width, 1024),))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], x.shape[1], -1)  # (S, L, d)
        pre = torch.einsum("sld,srd->slr", x, self.weight)  # (S, L, R)
        if self.bias is not None:
            pre = pre + self.bias[:, None, :]
        act = torch.relu(pre) * self.second[:, None, :]  # (S, L, R)
        if self.n_outputs == 1:
            return act.sum(-1, keepdim=True)
        return act.reshape(*act.shape[:2], self.n_outputs, self.per_output).sum(-1)  # (S, L, C)

    def first_layer(self) -> torch.Tensor:
        return self.weight

    def neuron_labels(self) -> list[str]:
        if self.n_outputs == 1:
            n_pos = (self.per_output + 1) // 2
            return [f"+{r}" for r in range(n_pos)] + [f"-{r}" for r in range(self.per_output - n_pos)]
        return [f"{j}.{r}" for j in range(self.n_outputs) for r in range(self.per_output)]

    def neuron_classes(self) -> torch.Tensor | None:
        if self.n_outputs == 1:
            return None
        return torch.arange(self.n_outputs).repeat_interleave(self.per_output)
